using Tidemark.Storage;

namespace Tidemark.Engine.Backups;

/// <summary>How a store takes clusters that read as zeroes.</summary>
internal enum ZeroClusters
{
    /// <summary>Not written: the store is fresh and has no backing file, so it reads zeroes there and stays sparse.</summary>
    Skip,

    /// <summary>Written as write-zeroes: the store existed (reuse-external) and may hold anything.</summary>
    WriteZeroes,

    /// <summary>
    /// Written as zero data: the store's header names a backing file (an incremental qcow2
    /// target over the live disk) that a hole would let through once a restore chain opens it.
    /// </summary>
    WriteData,
}

/// <summary>
/// Where a disk's point-in-time content goes: the push target or the pull scratch, at the
/// disk's own offsets. Writes cluster by cluster so that zero clusters follow
/// <see cref="ZeroClusters"/>.
/// </summary>
internal sealed class CopyAsideStore
{
    private readonly ZeroClusters _zeroes;
    private readonly int _cluster;

    /// <param name="image">The store, open read-write; the store's owner disposes it.</param>
    /// <param name="cluster">The unit in which zero runs are found; the copy granularity.</param>
    public CopyAsideStore(IBlockImage image, int cluster, ZeroClusters zeroes)
    {
        Image = image;
        _cluster = cluster;
        _zeroes = zeroes;
    }

    public IBlockImage Image { get; }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>, a cluster boundary.</summary>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_zeroes == ZeroClusters.WriteData)
        {
            await Image.WriteAsync(offset, data, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            return;
        }

        // Runs of non-zero clusters become one write each; zero runs are skipped or zeroed.
        var position = 0;
        while (position < data.Length)
        {
            var zero = IsZero(data.Span, position);
            var end = position;
            while (end < data.Length && IsZero(data.Span, end) == zero)
            {
                end += Math.Min(_cluster, data.Length - end);
            }

            if (!zero)
            {
                await Image.WriteAsync(offset + position, data[position..end], WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }
            else if (_zeroes == ZeroClusters.WriteZeroes)
            {
                await Image.WriteZeroesAsync(offset + position, end - position, WriteFlags.MayUnmap, cancellationToken).ConfigureAwait(false);
            }

            position = end;
        }
    }

    private bool IsZero(ReadOnlySpan<byte> data, int position)
        => !data.Slice(position, Math.Min(_cluster, data.Length - position)).ContainsAnyExcept((byte)0);
}
