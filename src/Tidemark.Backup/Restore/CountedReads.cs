using Tidemark.Storage;

namespace Tidemark.Backup.Restore;

/// <summary>
/// A chain file as a restore reads it, with every byte read reported to a progress display. It
/// only passes calls through: it does not own the image (the restore disposes that) and it
/// reads no byte the restore would not.
/// </summary>
internal sealed class CountedReads(IBlockImage image, Action<long> read) : IBlockImage
{
    public long VirtualSize => image.VirtualSize;

    public bool IsReadOnly => image.IsReadOnly;

    public int AllocationGranularity => image.AllocationGranularity;

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await image.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
        read(buffer.Length);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        image.WriteAsync(offset, data, flags, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        image.WriteZeroesAsync(offset, length, flags, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        image.DiscardAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => image.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        image.GetExtentsAsync(offset, length, cancellationToken);

    /// <summary>The bytes that may hold data (neither hole nor zero): what a sparse copy reads.</summary>
    public static async Task<long> DataBytesAsync(IBlockImage image, CancellationToken cancellationToken)
    {
        long bytes = 0;
        for (long at = 0; at < image.VirtualSize;)
        {
            var extents = await image.GetExtentsAsync(at, image.VirtualSize - at, cancellationToken).ConfigureAwait(false);
            foreach (var extent in extents)
            {
                if ((extent.Kind & ExtentKind.Zero) == 0)
                {
                    bytes += extent.Length;
                }
            }

            at = extents[^1].End;
        }

        return bytes;
    }

    // The restore owns the image and disposes it.
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
