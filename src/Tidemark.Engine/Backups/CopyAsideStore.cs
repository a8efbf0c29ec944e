using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Backups;

/// <summary>How a store takes clusters that read as zeroes.</summary>
internal enum ZeroClusters
{
    /// <summary>Not written: the store is fresh and has no backing file, so it reads zeroes there and stays sparse.</summary>
    Skip,

    /// <summary>
    /// Written as write-zeroes: the store existed (reuse-external) and may hold anything, or its
    /// header names a backing file (an incremental qcow2 target over the live disk) that a hole
    /// would let through once a restore chain opens it. A qcow2 store records them with the zero
    /// flag, as QEMU's block-copy leaves a range the disk reads as zeroes (write-zeroes, not
    /// data), so an incremental target holds data only where the dirty clusters hold data.
    /// </summary>
    WriteZeroes,
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
        await SplitAsync(new GuestData(offset, data), null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes several pieces, each at a cluster boundary: into a qcow2 store with one gathered
    /// write (<see cref="Qcow2Image.WriteGatheredAsync"/>), which places scattered pieces next to
    /// each other in the file; else one by one.
    /// </summary>
    public async ValueTask WriteGatheredAsync(IReadOnlyList<GuestData> pieces, CancellationToken cancellationToken)
    {
        if (Image is not Qcow2Image qcow2)
        {
            foreach (var piece in pieces)
            {
                await WriteAsync(piece.Offset, piece.Data, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        var data = new List<GuestData>(pieces.Count);
        foreach (var piece in pieces)
        {
            await SplitAsync(piece, data, cancellationToken).ConfigureAwait(false);
        }

        await qcow2.WriteGatheredAsync(data, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Splits <paramref name="piece"/> into runs of non-zero and of zero clusters: a non-zero run
    /// is written at once, or added to <paramref name="gathered"/> when given; a zero run is
    /// skipped or zeroed (<see cref="ZeroClusters"/>).
    /// </summary>
    private async ValueTask SplitAsync(GuestData piece, List<GuestData>? gathered, CancellationToken cancellationToken)
    {
        for (var position = 0; position < piece.Data.Length;)
        {
            var end = RunEnd(piece.Data.Span, position, out var zero);
            var run = new GuestData(piece.Offset + position, piece.Data[position..end]);
            if (zero)
            {
                if (_zeroes == ZeroClusters.WriteZeroes)
                {
                    await Image.WriteZeroesAsync(run.Offset, run.Data.Length, WriteFlags.MayUnmap, cancellationToken).ConfigureAwait(false);
                }
            }
            else if (gathered is not null)
            {
                gathered.Add(run);
            }
            else
            {
                await Image.WriteAsync(run.Offset, run.Data, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }

            position = end;
        }
    }

    /// <summary>Where the run of clusters that are all zero, or all not, starting at <paramref name="position"/> ends.</summary>
    private int RunEnd(ReadOnlySpan<byte> data, int position, out bool zero)
    {
        zero = IsZero(data, position);
        var end = position;
        while (end < data.Length && IsZero(data, end) == zero)
        {
            end += Math.Min(_cluster, data.Length - end);
        }

        return end;
    }

    private bool IsZero(ReadOnlySpan<byte> data, int position)
        => !data.Slice(position, Math.Min(_cluster, data.Length - position)).ContainsAnyExcept((byte)0);
}
