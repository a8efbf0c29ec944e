using Tidemark.Engine.Disks;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>
/// The guest's side of a running disk, as the domain will provide it, reduced to what backup
/// tests need: every write, write-zeroes and discard waits at a pause gate, marks a dirty
/// bitmap (the checkpoint's), calls the installed interceptor, then reaches the live image.
/// Served read-write over NBD so that real clients (qemu-io) are the guest.
/// </summary>
internal sealed class GuestDisk : IBlockImage
{
    private readonly Lock _lock = new();
    private readonly IBlockImage _live;
    private TaskCompletionSource _open = Opened();
    private TaskCompletionSource? _drained;
    private bool _paused;
    private int _inFlight;

    public GuestDisk(IBlockImage live)
    {
        _live = live;
        Dirty = new DirtyBitmap(live.VirtualSize);
    }

    /// <summary>Copy-before-write of the running backup job, or null.</summary>
    public IGuestWriteInterceptor? Interceptor { get; set; }

    /// <summary>Every byte written since <see cref="ResetDirty"/> (a checkpoint's bitmap).</summary>
    public DirtyBitmap Dirty { get; private set; }

    /// <summary>Guest writes the interceptor failed.</summary>
    public int FailedWrites => Volatile.Read(ref _failedWrites);

    private int _failedWrites;

    public long VirtualSize => _live.VirtualSize;

    public bool IsReadOnly => false;

    public int AllocationGranularity => _live.AllocationGranularity;

    public void ResetDirty() => Dirty = new DirtyBitmap(_live.VirtualSize);

    /// <summary>Closes the gate and waits for the writes in flight: the instant barrier.</summary>
    public async Task PauseAsync()
    {
        Task drained;
        lock (_lock)
        {
            _paused = true;
            _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_inFlight == 0)
            {
                _drained.TrySetResult();
            }

            drained = _drained.Task;
        }

        await drained;
        await _live.FlushAsync();
    }

    public void Resume()
    {
        lock (_lock)
        {
            _paused = false;
            _open.TrySetResult();
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
        => _live.ReadAsync(offset, buffer, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => ModifyAsync(offset, data.Length, () => _live.WriteAsync(offset, data, flags, cancellationToken), cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => ModifyAsync(offset, length, () => _live.WriteZeroesAsync(offset, length, flags, cancellationToken), cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
        => ModifyAsync(offset, length, () => _live.DiscardAsync(offset, length, cancellationToken), cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _live.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => _live.GetExtentsAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private async ValueTask ModifyAsync(long offset, long length, Func<ValueTask> write, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task open;
            lock (_lock)
            {
                if (!_paused)
                {
                    _inFlight++;
                    break;
                }

                open = _open.Task;
            }

            await open.WaitAsync(cancellationToken);
        }

        try
        {
            Dirty.SetRange(offset, length);
            if (Interceptor is { } interceptor)
            {
                try
                {
                    await interceptor.BeforeGuestWriteAsync(offset, length, cancellationToken);
                }
                catch
                {
                    Interlocked.Increment(ref _failedWrites);
                    throw;
                }
            }

            await write();
        }
        finally
        {
            lock (_lock)
            {
                if (--_inFlight == 0 && _paused)
                {
                    _drained?.TrySetResult();
                }
            }
        }
    }

    private static TaskCompletionSource Opened()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }
}
