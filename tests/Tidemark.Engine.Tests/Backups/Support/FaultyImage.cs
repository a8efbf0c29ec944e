using Tidemark.Storage;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>
/// A store that fails its writes once armed, as a full or failing scratch disk does (QEMU's
/// iotests make the target fail through blkdebug the same way). Reads and everything else
/// pass through.
/// </summary>
internal sealed class FaultyImage(IBlockImage inner) : IBlockImage
{
    private int _failing;

    public bool Failing
    {
        get => Volatile.Read(ref _failing) != 0;
        set => Volatile.Write(ref _failing, value ? 1 : 0);
    }

    public long VirtualSize => inner.VirtualSize;

    public bool IsReadOnly => inner.IsReadOnly;

    public int AllocationGranularity => inner.AllocationGranularity;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => Failing ? throw new IOException("No space left on device") : inner.WriteAsync(offset, data, flags, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => Failing ? throw new IOException("No space left on device") : inner.WriteZeroesAsync(offset, length, flags, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => inner.GetExtentsAsync(offset, length, cancellationToken);

    /// <summary>Whether closing fails with an error no store is expected to raise (a bug further down).</summary>
    public bool BreaksOnClose { get; set; }

    public async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        if (BreaksOnClose)
        {
            throw new InvalidOperationException("the store broke while closing");
        }
    }
}
