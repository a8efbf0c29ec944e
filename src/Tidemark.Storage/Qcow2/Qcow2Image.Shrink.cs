namespace Tidemark.Storage.Qcow2;

// Shrinking a qcow2 image, in QEMU 7.2's order (qcow2_co_truncate, offset < old length):
//
//   1. the clusters past the new end are discarded for good (qcow2_cluster_discard with
//      QCOW2_DISCARD_ALWAYS and full_discard: entries become 0, not zero-flagged, since
//      nothing of the backing file shows there any more); the L2 tables wholly past the new
//      end are dropped with the L1 entries that point at them (qcow2_shrink_l1_table: the
//      header's L1 size stays, the entries past the new end become 0). Written as one
//      metadata write-back: L2 tables, fsync, L1 entries, fsync, then the freed refcounts;
//   2. refcount blocks that count nothing but (maybe) themselves leave the refcount table
//      (qcow2_shrink_reftable): the table is written and flushed first, then the blocks'
//      own references are dropped;
//   3. the file is cut after its last cluster in use (qcow2_get_last_cluster);
//   4. the header gets the new virtual size (one write of cluster 0 and a flush).
//
// What a crash (or SIGKILL) leaves behind, by the step it interrupts:
//   during 1: the old size; some clusters past the new end read as zeroes or from the
//             backing file (the caller asked for them to go), a dropped table is still
//             counted (leaks), or the old mapping whole;
//   during 2: a block gone from the table but still counted by another block (a leak); a
//             block that counted only itself gone with its only reference (nothing);
//   during 3: a longer file whose tail nobody references or counts (clean);
//   during 4: the old size over the same, smaller mapping.
// So the image is always clean or leaks only; the guest content before the new end never
// changes. The clusters step 1 frees for good are punched out of the host file once their
// refcounts are durable, as QEMU passes its DISCARD_ALWAYS frees down as discards, so the
// file holds the blocks qemu-img's does (`actual-size`).
public sealed partial class Qcow2Image
{
    private async ValueTask ShrinkAsync(long newSize, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Requests reading or writing data without the lock may target the clusters freed
            // and the file tail cut below (Qcow2Image.cs remarks).
            await _inFlight.DrainAsync().ConfigureAwait(false);
            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await ShrinkLockedAsync(newSize, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw Break(e, "shrinking");
            }

            // Under the lock: no write can mark the bitmaps between the new size and their resize.
            _bitmaps.Resize(newSize);
        }
        finally
        {
            _lock.Release();
        }
    }

    private async ValueTask ShrinkLockedAsync(long newSize, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        var firstGone = (newSize + clusterSize - 1) >> bits;
        var endCluster = (VirtualSize + clusterSize - 1) >> bits;
        var keptL1 = (int)Qcow2Header.RequiredL1Entries(newSize, bits, _header.L2Entries);
        var keptClusters = (long)keptL1 * _header.L2Entries;

        // 1. The tail of the last L2 table kept, then the tables past the new end. QEMU's
        //    discard takes each L2 table of the range through get_cluster_table, which
        //    allocates a missing one: the last table kept then exists, empty, even where the
        //    image had none (those past the new end are freed again at once), and the file
        //    ends where QEMU's does.
        var firstL1 = (int)(firstGone / _header.L2Entries);
        if (firstGone < endCluster && firstL1 < keptL1 && (_map.L1Entry(firstL1) & Qcow2Layout.L1OffsetMask) == 0)
        {
            await EnsureWritableL2Async(firstGone, cancellationToken).ConfigureAwait(false);
        }

        for (var cluster = firstGone; cluster < Math.Min(endCluster, keptClusters); cluster++)
        {
            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            if (entry.Raw == 0 && entry.SubclusterBitmap == 0)
            {
                continue;
            }

            await SetEntryAsync(cluster, 0, cancellationToken).ConfigureAwait(false);
            Release(entry);
        }

        var droppedTables = new List<long>();
        for (var l1 = keptL1; l1 < _map.L1Size; l1++)
        {
            var table = await _map.GetL2Async(l1, cancellationToken).ConfigureAwait(false);
            if (table is null)
            {
                continue;
            }

            for (var i = 0; i < table.Count; i++)
            {
                Release(new L2Entry(table.Entry(i), table.Bitmap(i), bits, _header.HasExtendedL2));
            }

            _map.Drop(l1);
            _refcounts.QueueFree(table.HostOffset, 1);
            droppedTables.Add(table.HostOffset >> bits);
        }

        // A compressed cluster being filled may just have been freed.
        _compressedNext = 0;
        _compressedEnd = 0;
        var freed = _refcounts.PendingFreeClusters().Except(droppedTables).ToArray();
        await FlushMetadataCoreAsync(cancellationToken).ConfigureAwait(false);

        // QEMU discards the data clusters in one batch (qcow2_cluster_discard), then each L2
        // table on its own as qcow2_shrink_l1_table frees it; with clusters smaller than a
        // file system block, a block shared by a table and data stays allocated there.
        await PunchUnusedAsync(freed, cancellationToken).ConfigureAwait(false);
        foreach (var table in droppedTables)
        {
            await PunchUnusedAsync([table], cancellationToken).ConfigureAwait(false);
        }

        // 2. and 3.
        await _refcounts.DropUnusedBlocksAsync(cancellationToken).ConfigureAwait(false);
        var fileLength = _file.Length;
        var lastUsed = await _refcounts.LastUsedClusterAsync((fileLength + clusterSize - 1) >> bits, cancellationToken).ConfigureAwait(false);
        if (lastUsed < 0)
        {
            // qcow2_get_last_cluster signals corruption here: at least the header is counted.
            throw new StorageException(StorageErrorReason.Corrupt, $"{Path}: There are no references in the refcount table.");
        }

        var end = (lastUsed + 1) << bits;
        if (end < fileLength)
        {
            // The dropped references are durable before the tail goes, so no refcount on disk
            // counts a cluster past the end of the file.
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
            _file.SetLength(end);
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        // 4.
        await RewriteHeaderAsync(_header with { Size = newSize }, cancellationToken).ConfigureAwait(false);

        // The allocator's idea of where the file ends (fresh clusters read as zeroes) is taken
        // again from the shorter file.
        await LoadTablesAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Punches out of the host file every cluster of <paramref name="freed"/> that nothing counts
    /// any more, in runs: QEMU frees them with QCOW2_DISCARD_ALWAYS, which its
    /// qcow2_process_discards always passes down, so its file keeps no blocks for them either.
    /// A cluster still counted (shared with an internal snapshot, or a compressed cluster's
    /// neighbour) keeps its data. No table on disk points at any of them any more (the tables
    /// were flushed before the frees were applied), so a crash here leaves at worst a leaked
    /// cluster that reads as zeroes.
    /// </summary>
    private async ValueTask PunchUnusedAsync(long[] freed, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var fileClusters = (_file.Length + _header.ClusterSize - 1) >> bits;
        var (start, end) = (-1L, -1L);
        foreach (var cluster in freed)
        {
            if (cluster >= fileClusters || await _refcounts.GetAsync(cluster, cancellationToken).ConfigureAwait(false) != 0)
            {
                continue;
            }

            if (cluster != end)
            {
                _file.PunchHole(start << bits, (end - start) << bits);
                start = cluster;
            }

            end = cluster + 1;
        }

        _file.PunchHole(start << bits, (end - start) << bits);
    }
}
