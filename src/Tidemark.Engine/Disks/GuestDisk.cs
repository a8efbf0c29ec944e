using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Disks;

/// <summary>
/// A running disk as the guest sees it (the image its NBD export serves). Every request first
/// passes the domain's <see cref="GuestGate"/> (it waits there while the domain is paused). Every
/// write, write-zeroes and discard then passes the domain's <see cref="InstantBarrier"/>, then the
/// installed <see cref="IGuestWriteInterceptor"/> (a backup job's copy-before-write, if any), then
/// reaches the live image, whose enabled bitmaps record it before it is acknowledged. Reads,
/// flushes and extent queries go from the gate straight to the live image.
/// </summary>
/// <remarks>
/// <para>The gate comes before the barrier, and a request holds its gate passage until it completes:
/// a pause therefore drains requests waiting at a closed barrier too, and a request waiting at
/// the gate holds no barrier passage that a checkpoint of the paused domain would wait for.</para>
/// <para>The interceptor is read once per request after the request has passed the barrier; it is
/// changed only while the barrier is closed (<see cref="SetInterceptor"/>), so a request either
/// runs entirely under the old interceptor or entirely under the new one. The guest disk never
/// disposes the live image: the running domain owns it.</para>
/// <para>A request whose image I/O fails goes to the disk's error policy once it has left the
/// gate (<see cref="GuestIoFailureHandler"/>): it fails, is answered as done, or waits for the
/// domain's resume, QEMU's stop action having paused the domain, and is then tried again from the
/// gate on, as QEMU's devices retry a request held by <c>werror=stop</c>.</para>
/// </remarks>
public sealed class GuestDisk : IHostFileImage
{
    private readonly IBlockImage _image;
    private readonly InstantBarrier _barrier;
    private readonly GuestGate _gate;
    private readonly GuestIoFailureHandler? _ioFailures;

    // copy_on_read='on' on a writable qcow2 image: reads copy what they find below it into it.
    private readonly Qcow2Image? _copyOnRead;
    private IGuestWriteInterceptor? _interceptor;

    /// <param name="ioFailures">What a request whose image I/O failed comes to (the disk's error policy); without it, every such request fails.</param>
    /// <param name="copyOnRead">The disk's copy_on_read='on': a read copies what it finds below a qcow2 top image into it (<see cref="Qcow2Image.CopyOnReadAsync"/>).</param>
    internal GuestDisk(IBlockImage image, InstantBarrier barrier, GuestGate gate, GuestIoFailureHandler? ioFailures = null, bool copyOnRead = false)
    {
        _image = image;
        _barrier = barrier;
        _gate = gate;
        _ioFailures = ioFailures;
        _copyOnRead = copyOnRead && image is Qcow2Image { IsReadOnly: false } qcow2 ? qcow2 : null;
    }

    /// <summary>The live image under the guest disk (what a job's point-in-time view reads where nothing was copied aside).</summary>
    public IBlockImage LiveImage => _image;

    /// <summary>The interceptor guest writes call first, or null.</summary>
    public IGuestWriteInterceptor? Interceptor => Volatile.Read(ref _interceptor);

    public long VirtualSize => _image.VirtualSize;

    public bool IsReadOnly => _image.IsReadOnly;

    public int AllocationGranularity => _image.AllocationGranularity;

    /// <summary>
    /// Installs <paramref name="interceptor"/> (or removes the current one with null). Allowed
    /// only while <paramref name="closure"/> holds this disk's domain barrier closed.
    /// </summary>
    /// <exception cref="InvalidOperationException">The closure is not of this domain's barrier or is already open.</exception>
    public void SetInterceptor(IGuestWriteInterceptor? interceptor, BarrierClosure closure)
    {
        ArgumentNullException.ThrowIfNull(closure);
        if (!ReferenceEquals(closure.Barrier, _barrier))
        {
            throw new InvalidOperationException("an interceptor is installed or removed only while the domain's barrier is held closed");
        }

        Volatile.Write(ref _interceptor, interceptor);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                using var gate = await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
                await _image.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
                if (_copyOnRead is { } top)
                {
                    // As QEMU's copy-on-read filter: the copy is part of the read, and fails it if it fails.
                    await top.CopyOnReadAsync(offset, buffer.Length, cancellationToken).ConfigureAwait(false);
                }

                return;
            }
            catch (Exception e) when (_ioFailures is not null && DiskErrorPolicy.IsIoFailure(e))
            {
                if (!await _ioFailures(write: false, e, cancellationToken).ConfigureAwait(false))
                {
                    // Ignored: what the buffer holds is what the guest gets, as with QEMU's rerror=ignore.
                    return;
                }
            }
        }
    }

    /// <remarks>
    /// Refused while the domain is paused, so the read goes through <see cref="ReadAsync"/> and
    /// waits at the gate. A read handed the file just before a pause is not counted by the gate's
    /// drain (the kernel sends it later); it reads what the file holds, which no guest request
    /// changes while paused, so it reads the same as a drained one.
    /// </remarks>
    public bool TryGetHostFile(long offset, long length, out FileStream file)
    {
        if (_image is IHostFileImage host && !_gate.IsShut)
        {
            return host.TryGetHostFile(offset, length, out file);
        }

        file = null!;
        return false;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => GuestWriteAsync(offset, data.Length, (data, flags), static (image, offset, request, token) => image.WriteAsync(offset, request.data, request.flags, token), cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => GuestWriteAsync(offset, length, (length, flags), static (image, offset, request, token) => image.WriteZeroesAsync(offset, request.length, request.flags, token), cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
        => GuestWriteAsync(offset, length, length, static (image, offset, length, token) => image.DiscardAsync(offset, length, token), cancellationToken);

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                using var gate = await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
                await _image.FlushAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (_ioFailures is not null && DiskErrorPolicy.IsIoFailure(e))
            {
                if (!await _ioFailures(write: true, e, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
    }

    public async ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        using var gate = await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        return await _image.GetExtentsAsync(offset, length, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A request that changes the disk (write, write-zeroes, discard): the gate, the barrier, the
    /// interceptor, then <paramref name="change"/> on the live image; a failure of its I/O goes
    /// to the error policy, and a stopped request starts again from the gate.
    /// </summary>
    private async ValueTask GuestWriteAsync<TRequest>(long offset, long length, TRequest request, Func<IBlockImage, long, TRequest, CancellationToken, ValueTask> change, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                using var gate = await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
                using var passage = await _barrier.EnterAsync(cancellationToken).ConfigureAwait(false);
                if (Interceptor is { } interceptor)
                {
                    await interceptor.BeforeGuestWriteAsync(offset, length, cancellationToken).ConfigureAwait(false);
                }

                await change(_image, offset, request, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (_ioFailures is not null && DiskErrorPolicy.IsIoFailure(e))
            {
                if (!await _ioFailures(write: true, e, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
    }

    /// <summary>Nothing to release: the running domain owns and disposes the live image.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// Applies a disk's error policy to a guest request whose image I/O failed, once the request has
/// left the gate: true to try the request again (the domain is paused now, so the retry waits at
/// the gate for the resume), false to answer it as done (ignored); throws the failure for the
/// guest to see (reported).
/// </summary>
/// <param name="write">A write, write-zeroes, discard or flush (QEMU's werror), else a read (rerror).</param>
/// <param name="failure">What the image threw.</param>
/// <param name="cancellationToken">The request's token.</param>
internal delegate ValueTask<bool> GuestIoFailureHandler(bool write, Exception failure, CancellationToken cancellationToken);
