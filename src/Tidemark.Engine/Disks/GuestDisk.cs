using Tidemark.Storage;

namespace Tidemark.Engine.Disks;

/// <summary>
/// A running disk as the guest sees it (the image its NBD export serves). Every write,
/// write-zeroes and discard passes the domain's <see cref="InstantBarrier"/>, then the installed
/// <see cref="IGuestWriteInterceptor"/> (a backup job's copy-before-write, if any), then reaches
/// the live image, whose enabled bitmaps record it before it is acknowledged. Reads, flushes
/// and extent queries go straight to the live image.
/// </summary>
/// <remarks>
/// The interceptor is read once per request after the request has passed the barrier; it is
/// changed only while the barrier is closed (<see cref="SetInterceptor"/>), so a request either
/// runs entirely under the old interceptor or entirely under the new one. The guest disk never
/// disposes the live image: the running domain owns it.
/// </remarks>
public sealed class GuestDisk : IHostFileImage
{
    private readonly IBlockImage _image;
    private readonly InstantBarrier _barrier;
    private IGuestWriteInterceptor? _interceptor;

    internal GuestDisk(IBlockImage image, InstantBarrier barrier)
    {
        _image = image;
        _barrier = barrier;
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

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
        => _image.ReadAsync(offset, buffer, cancellationToken);

    public bool TryGetHostFile(long offset, long length, out FileStream file)
    {
        if (_image is IHostFileImage host)
        {
            return host.TryGetHostFile(offset, length, out file);
        }

        file = null!;
        return false;
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        using var passage = await _barrier.EnterAsync(cancellationToken).ConfigureAwait(false);
        if (Interceptor is { } interceptor)
        {
            await interceptor.BeforeGuestWriteAsync(offset, data.Length, cancellationToken).ConfigureAwait(false);
        }

        await _image.WriteAsync(offset, data, flags, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        using var passage = await _barrier.EnterAsync(cancellationToken).ConfigureAwait(false);
        if (Interceptor is { } interceptor)
        {
            await interceptor.BeforeGuestWriteAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }

        await _image.WriteZeroesAsync(offset, length, flags, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        using var passage = await _barrier.EnterAsync(cancellationToken).ConfigureAwait(false);
        if (Interceptor is { } interceptor)
        {
            await interceptor.BeforeGuestWriteAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }

        await _image.DiscardAsync(offset, length, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _image.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => _image.GetExtentsAsync(offset, length, cancellationToken);

    /// <summary>Nothing to release: the running domain owns and disposes the live image.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
