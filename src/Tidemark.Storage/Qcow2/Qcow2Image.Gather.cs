namespace Tidemark.Storage.Qcow2;

/// <summary>Data for <see cref="Qcow2Image.WriteGatheredAsync"/>: guest bytes at a guest offset.</summary>
/// <param name="Offset">Where the data goes in the guest's view.</param>
/// <param name="Data">The bytes.</param>
public readonly record struct GuestData(long Offset, ReadOnlyMemory<byte> Data);

public sealed partial class Qcow2Image
{
    /// <summary>Most host clusters one gathered write allocates at once.</summary>
    private const int MaxGatheredClusters = 256;

    /// <summary>
    /// Writes several pieces of guest data that lie apart in the guest, under one hold of the
    /// metadata lock. Whole clusters that need new host clusters (unallocated, zero, shared or
    /// compressed ones) get host clusters next to each other and are written with one vectored
    /// file write, in the order given: a pull backup's scratch takes the old content of scattered
    /// small guest writes this way, as one sequential write into the file instead of one small
    /// write into a fresh cluster each (a new page of the file and a new extent of the file
    /// system every time). The rest (partial clusters, clusters already allocated in place) is
    /// written as <see cref="WriteAsync"/> would write it.
    /// </summary>
    /// <remarks>
    /// Crash order as for any allocating write (top of Qcow2Image.Write.cs): the L2 tables are
    /// allocated first, so they do not split the data run, then the data is written, then the
    /// entries are set in the cached tables and reach the file with the next write-back.
    /// </remarks>
    public async ValueTask WriteGatheredAsync(IReadOnlyList<GuestData> pieces, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        CheckWritable();
        foreach (var piece in pieces)
        {
            CheckRange(piece.Offset, piece.Data.Length);
        }

        cancellationToken.ThrowIfCancellationRequested();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            var gathered = new List<GuestData>();
            var clusters = 0;
            foreach (var piece in pieces)
            {
                MarkBitmapsDirty(piece.Offset, piece.Data.Length);
                if (!await IsGatherableLockedAsync(piece, cancellationToken).ConfigureAwait(false))
                {
                    await WriteLockedAsync(piece.Offset, piece.Data, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var count = piece.Data.Length >> _header.ClusterBits;
                if (clusters + count > MaxGatheredClusters && gathered.Count > 0)
                {
                    await WriteGatheredLockedAsync(gathered, clusters, cancellationToken).ConfigureAwait(false);
                    gathered.Clear();
                    clusters = 0;
                }

                gathered.Add(piece);
                clusters += count;
            }

            if (gathered.Count > 0)
            {
                await WriteGatheredLockedAsync(gathered, clusters, cancellationToken).ConfigureAwait(false);
            }

            await AfterChangeAsync(WriteFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Whole clusters, none of them writable in place, and few enough for one allocation.</summary>
    private async ValueTask<bool> IsGatherableLockedAsync(GuestData piece, CancellationToken cancellationToken)
    {
        var mask = _header.ClusterSize - 1L;
        if ((piece.Offset & mask) != 0 || (piece.Data.Length & mask) != 0 || piece.Data.Length == 0 || piece.Data.Length > (long)MaxGatheredClusters << _header.ClusterBits)
        {
            return false;
        }

        // One L2 table at a time: a 1 MiB piece is 256 clusters of a 4 KiB scratch.
        var first = piece.Offset >> _header.ClusterBits;
        var end = first + (piece.Data.Length >> _header.ClusterBits);
        for (var cluster = first; cluster < end;)
        {
            var (l1, l2) = _map.Locate(cluster);
            var table = await _map.GetL2Async(l1, cancellationToken).ConfigureAwait(false);
            var tableCopied = (_map.L1Entry(l1) & Qcow2Layout.OflagCopied) != 0;
            for (; cluster < end && l2 < _header.L2Entries; cluster++, l2++)
            {
                var entry = _map.EntryOf(table, l2);
                if (tableCopied && entry.Kind == ClusterKind.Normal && entry.IsCopied)
                {
                    return false;
                }
            }
        }

        return true;
    }

    private async ValueTask WriteGatheredLockedAsync(List<GuestData> pieces, int clusters, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;

        // Every L2 table the pieces need, before the data clusters, so that none splits the run.
        foreach (var piece in pieces)
        {
            var first = piece.Offset >> bits;
            var last = first + (piece.Data.Length >> bits) - 1;
            for (var l1 = _map.Locate(first).L1; l1 <= _map.Locate(last).L1; l1++)
            {
                await EnsureWritableL2Async(Math.Max(first, (long)l1 * _header.L2Entries), cancellationToken).ConfigureAwait(false);
            }
        }

        var host = await _refcounts.AllocateAsync(clusters, cancellationToken).ConfigureAwait(false);

        // From the allocation on, the entries are set whatever the token says, or the clusters leak.
        _file.WriteGatheredOnCallingThread(host, pieces.ConvertAll(p => p.Data));
        var next = host;
        foreach (var piece in pieces)
        {
            var first = piece.Offset >> bits;
            var end = first + (piece.Data.Length >> bits);
            for (var cluster = first; cluster < end;)
            {
                var table = await EnsureWritableL2Async(cluster, CancellationToken.None).ConfigureAwait(false);
                for (var (_, l2) = _map.Locate(cluster); cluster < end && l2 < _header.L2Entries; cluster++, l2++)
                {
                    var old = _map.EntryOf(table, l2);
                    table.Set(l2, (ulong)next | Qcow2Layout.OflagCopied);
                    Release(old);
                    next += _header.ClusterSize;
                }
            }
        }
    }
}
