using Tidemark.Storage;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>
/// A store whose writes wait at a gate until <see cref="Open"/>, then pass through or, when
/// <see cref="Failing"/>, fail as a full disk does: a scratch write held in flight for as long
/// as a test needs. Reads and everything else pass through at once.
/// </summary>
internal sealed class GatedImage(IBlockImage inner) : IBlockImage
{
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstArrival = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _arrived;
    private int _written;

    /// <summary>Writes that pass before the gate starts holding them (0: it holds the first).</summary>
    public int PassFirst { get; init; }

    /// <summary>Whether writes fail once through the gate.</summary>
    public bool Failing { get; set; }

    /// <summary>Writes that have reached the gate.</summary>
    public int Arrived => Volatile.Read(ref _arrived);

    /// <summary>Completes when the first write the gate holds reaches it.</summary>
    public Task FirstArrival => _firstArrival.Task;

    /// <summary>Writes that have passed the gate and reached the inner image.</summary>
    public int Written => Volatile.Read(ref _written);

    public long VirtualSize => inner.VirtualSize;

    public bool IsReadOnly => inner.IsReadOnly;

    public int AllocationGranularity => inner.AllocationGranularity;

    public void Open() => _gate.TrySetResult();

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Increment(ref _arrived) > PassFirst)
        {
            _firstArrival.TrySetResult();
            await _gate.Task.WaitAsync(cancellationToken);
        }

        if (Failing)
        {
            throw new IOException("No space left on device");
        }

        await inner.WriteAsync(offset, data, flags, cancellationToken);
        Interlocked.Increment(ref _written);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => WriteAsync(offset, new byte[length], flags, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => inner.GetExtentsAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
