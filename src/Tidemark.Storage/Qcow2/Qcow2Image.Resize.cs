namespace Tidemark.Storage.Qcow2;

// Growing a qcow2 image, in QEMU's order (qcow2_co_truncate with preallocation off):
//
//   1. pending metadata is written back, so the tables on disk are the ones in memory;
//   2. when the L1 table is too small for the new size, a new one of exactly the size needed
//      is allocated (qcow2_grow_l1_table with exact_size), its refcounts made durable, the old
//      entries copied into it and flushed;
//   3. the header gets the new L1 offset, L1 size and virtual size in one write of cluster 0
//      and a flush: a crash leaves the old image or the new one, never a mix;
//   4. the old L1 table is freed; a crash before that only leaks it.
//
// Shrinking is in Qcow2Image.Shrink.cs. Either way, persistent bitmaps are resized in memory
// (bdrv_dirty_bitmap_truncate: the new area clean, bits past a smaller end dropped) and stored
// with their new size at close, as qemu-img resize does.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Grows or shrinks the image to <paramref name="newSize"/> bytes (<c>qemu-img resize</c>,
    /// with <c>--shrink</c> for a smaller size: the caller asks for it, data past the new end is
    /// lost). A grown area reads as zeroes, also over a longer backing file (zero clusters, as QEMU
    /// writes them; a v2 image over one is refused as QEMU refuses it).
    /// </summary>
    /// <exception cref="StorageException">The size is not a multiple of 512, a v2 image has internal snapshots, needs a larger L1 table than QEMU allows, or an inconsistent bitmap cannot be resized.</exception>
    public async ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        cancellationToken.ThrowIfCancellationRequested();
        if (newSize <= 0)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "New image size must be positive");
        }

        if ((newSize & (DiskSize.SectorSize - 1)) != 0)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "The new size must be a multiple of 512");
        }

        if (_header.SnapshotCount > 0 && _header.Version < 3)
        {
            // QEMU 7.2's words and condition: a v2 snapshot table need not hold each snapshot's
            // disk size (formats.md §1.6), so a snapshot would take the new size when applied.
            // A v3 image is resized with its snapshots as they are: their L1 tables, the
            // clusters those reach (counted once per path, so the shrink below only drops the
            // active path's references) and their recorded disk sizes stay.
            throw new StorageException(StorageErrorReason.UnsupportedFeature, "Can't resize a v2 image which has snapshots");
        }

        // qcow2_truncate_bitmaps_check: every bitmap must be loaded and usable to be resized.
        foreach (var bitmap in _bitmaps.Bitmaps)
        {
            if (bitmap.Inconsistent)
            {
                throw new StorageException(StorageErrorReason.BitmapInconsistent, $"Bitmap '{bitmap.Name}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk");
            }
        }

        if (newSize < VirtualSize)
        {
            await ShrinkAsync(newSize, cancellationToken).ConfigureAwait(false);
            return;
        }

        var l1Entries = Qcow2Header.RequiredL1Entries(newSize, _header.ClusterBits, _header.L2Entries);
        if (l1Entries * 8 > Qcow2Layout.MaxL1Bytes)
        {
            // qcow2_grow_l1_table fails with EFBIG; qcow2_co_truncate adds its own words.
            throw new StorageException(StorageErrorReason.LimitExceeded, "Failed to grow the L1 table: File too large");
        }

        // bdrv_co_truncate: a backing file longer than the old size would show through the new
        // area, so QEMU zero-fills it (BDRV_REQ_ZERO_WRITE). v2 has no zero clusters, and QEMU
        // refuses with these words rather than write the zeroes as data.
        var zeroNewArea = newSize > VirtualSize && _backing is not null && _backing.VirtualSize > VirtualSize;
        if (zeroNewArea && _header.Version < 3)
        {
            throw new StorageException(StorageErrorReason.UnsupportedFeature, "Failed to zero out new clusters: Operation not supported");
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await GrowLockedAsync(newSize, (int)l1Entries, zeroNewArea, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException and not StorageException { Reason: StorageErrorReason.LimitExceeded })
            {
                throw Break(e, "resizing");
            }

            // Under the lock: no write can mark the bitmaps between the new size and their resize.
            _bitmaps.Resize(newSize);
        }
        finally
        {
            _lock.Release();
        }
    }

    private async ValueTask GrowLockedAsync(long newSize, int l1Entries, bool zeroNewArea, CancellationToken cancellationToken)
    {
        var oldSize = VirtualSize;
        if (l1Entries > _header.L1Size)
        {
            // With zeroing to do, the header keeps the old size until the zeroes are in place.
            await GrowL1LockedAsync(zeroNewArea ? _header.Size : newSize, l1Entries, cancellationToken).ConfigureAwait(false);
            if (!zeroNewArea)
            {
                return;
            }
        }

        if (zeroNewArea)
        {
            // qcow2_co_truncate's order: the zeroes, made durable, then the new size in the
            // header; a crash before that leaves the old size and the zeroes unreachable.
            await ZeroGrownAreaLockedAsync(oldSize, newSize, cancellationToken).ConfigureAwait(false);
            await FlushMetadataCoreAsync(cancellationToken).ConfigureAwait(false);
        }

        await RewriteHeaderAsync(_header with { Size = newSize }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// qcow2_co_truncate with BDRV_REQ_ZERO_WRITE: zero clusters from the first cluster boundary
    /// at or past the old end (qcow2_subcluster_zeroize), explicit zeroes for the unaligned head.
    /// </summary>
    private async ValueTask ZeroGrownAreaLockedAsync(long oldSize, long newSize, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var zeroStart = (oldSize + _header.ClusterSize - 1) & ~(_header.ClusterSize - 1L);
        if (zeroStart > oldSize)
        {
            await WriteLockedAsync(oldSize, new byte[Math.Min(zeroStart, newSize) - oldSize], cancellationToken).ConfigureAwait(false);
        }

        for (var cluster = zeroStart >> bits; cluster << bits < newSize; cluster++)
        {
            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            await ZeroClusterAsync(cluster, entry, readsZero: false, mayUnmap: true, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask GrowL1LockedAsync(long headerSize, int l1Entries, CancellationToken cancellationToken)
    {

        var oldOffset = _header.L1TableOffset;
        var oldClusters = L1Clusters(_header.L1Size);
        var newClusters = L1Clusters(l1Entries);

        var newOffset = await _refcounts.AllocateAsync(newClusters, cancellationToken).ConfigureAwait(false);
        await _refcounts.WriteBackAsync(cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);

        // The old entries as they are on disk (written back above), then zeroes; exactly the
        // table's bytes, as QEMU writes them, so the file ends where qemu-img's would.
        var table = new byte[l1Entries * 8L];
        await _file.ReadAsync(oldOffset, table.AsMemory(0, _header.L1Size * 8), cancellationToken).ConfigureAwait(false);
        await _file.WriteAsync(newOffset, table, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);

        await RewriteHeaderAsync(_header with { Size = headerSize, L1Size = l1Entries, L1TableOffset = newOffset }, cancellationToken).ConfigureAwait(false);
        _map = await ClusterMap.LoadAsync(_file, _header, ValidHostEnd, cancellationToken).ConfigureAwait(false);
        if (oldClusters > 0 && oldOffset != 0)
        {
            _refcounts.QueueFree(oldOffset, oldClusters);
            await FlushMetadataCoreAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private int L1Clusters(int entries) => (int)(((entries * 8L) + _header.ClusterSize - 1) >> _header.ClusterBits);
}
