namespace Tidemark.Storage.Qcow2;

// Crash safety (formats.md §1.7 rule 9; QEMU qcow2-cache dependencies).
//
// Guest data goes to its host cluster at once; every metadata change (refcounts, L2 entries,
// L1 entries) stays in the caches until FlushMetadataAsync writes it back in this order:
//
//   1. refcount blocks (new allocations: refcount 0 -> 1; new blocks before the table entries
//      that point at them, with an fsync between);
//   2. fsync: the data of newly allocated clusters and their refcounts are durable;
//   3. L2 tables, then (fsync) the L1 entries that point at new L2 tables;
//   4. fsync: the new mapping is durable;
//   5. queued frees (refcount -1 of clusters no table references any more), written without
//      waiting: a crash here only leaks them.
//
// What a crash (or SIGKILL) leaves behind, by the step it interrupts:
//   before 1 / during 1: clusters with raised refcounts that nothing references (leaks); the
//                        on-disk mapping is the one of the previous flush;
//   during 3:            some L2 tables point at new clusters whose refcounts are already durable;
//                        L2 tables written but not yet in the L1 are leaks;
//   after 4, during 5:   clusters still counted but no longer referenced (leaks).
// A reference to a cluster with refcount 0, or a cluster reused while an on-disk table still
// points at it, cannot happen: frees are applied only after step 4, and a cluster queued for
// freeing is not handed out again before that.
//
// Data written under the metadata lock (allocating writes, copy on write, FUA writes) of up to
// InlineWriteLimit bytes is written on the calling thread (WriteDataLockedAsync): a hand-off to
// a pool thread and back would keep every waiter on the lock waiting for two thread wake-ups.
//
// Writes into a cluster that is already allocated with refcount 1 (COPIED) overwrite it in
// place; the guest sees the old or new bytes after a crash, as with any disk without a flush.
// Such a write, when every cluster it touches is in place, writes its data after releasing the
// metadata lock (Qcow2Image.cs remarks: its clusters are not freed before it ends); nothing in
// the order above changes, since it changes no metadata.
public sealed partial class Qcow2Image
{
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        cancellationToken.ThrowIfCancellationRequested();
        DataRuns? inPlace;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            MarkBitmapsDirty(offset, data.Length);

            // A write with FUA stays under the lock: the flush after it must follow its data.
            inPlace = (flags & WriteFlags.ForceUnitAccess) == 0 ? await ResolveInPlaceLockedAsync(offset, data.Length, cancellationToken).ConfigureAwait(false) : null;
            if (inPlace is null)
            {
                await WriteLockedAsync(offset, data, cancellationToken).ConfigureAwait(false);
            }

            await AfterChangeAsync(flags, cancellationToken).ConfigureAwait(false);
            if (inPlace is not null)
            {
                _inFlight.Enter();
            }
        }
        finally
        {
            _lock.Release();
        }

        if (inPlace is null)
        {
            return;
        }

        // Overwrite in place without the lock (qcow2_co_pwritev_part writes the data of clusters
        // that need no allocation unlocked); the clusters cannot be freed until this leaves.
        try
        {
            if (DataIoUnlocked is { } seam)
            {
                await seam().ConfigureAwait(false);
            }

            var runs = inPlace.Value;
            for (var i = 0; i < runs.Count; i++)
            {
                var run = runs[i];
                await _file.WriteAsync(run.Host, data.Slice(run.BufferOffset, run.Length), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _inFlight.Exit();
        }
    }

    /// <summary>
    /// The host runs of a write whose every cluster is allocated with refcount 1 in a table that
    /// is not shared (both COPIED flags), so it overwrites in place and changes no metadata; null
    /// when some cluster needs an allocation or a copy on write.
    /// </summary>
    private async ValueTask<DataRuns?> ResolveInPlaceLockedAsync(long offset, int length, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        var runs = default(DataRuns);
        var done = 0;
        while (done < length)
        {
            var position = offset + done;
            var cluster = position >> bits;
            var inCluster = (int)(position & (clusterSize - 1));
            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            var (l1, _) = _map.Locate(cluster);
            if (entry.Kind != ClusterKind.Normal || !entry.IsCopied || (_map.L1Entry(l1) & Qcow2Layout.OflagCopied) == 0)
            {
                return null;
            }

            var n = Math.Min(clusterSize - inCluster, length - done);
            var host = entry.HostOffset + inCluster;
            runs.AddOrExtend(new DataRun(done, n, host));
            done += n;
        }

        return runs;
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();
        if (length == 0)
        {
            return;
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var bits = _header.ClusterBits;
            var end = offset + length;
            if ((flags & WriteFlags.FastZero) != 0)
            {
                await CheckFastZeroAsync(offset, end, cancellationToken).ConfigureAwait(false);
            }

            MarkBitmapsDirty(offset, length);
            var position = offset;
            while (position < end)
            {
                var cluster = position >> bits;
                var clusterStart = cluster << bits;
                var clusterEnd = Math.Min(clusterStart + _header.ClusterSize, VirtualSize);
                var stop = Math.Min(end, clusterEnd);
                var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
                var readsZero = ReadsZero(entry);
                if (position == clusterStart && stop == clusterEnd)
                {
                    await ZeroClusterAsync(cluster, entry, readsZero, (flags & WriteFlags.MayUnmap) != 0, cancellationToken).ConfigureAwait(false);
                }
                else if (!readsZero && !await BackingReadsZeroAsync(cluster, entry, cancellationToken).ConfigureAwait(false))
                {
                    await WriteLockedAsync(position, new byte[stop - position], cancellationToken).ConfigureAwait(false);
                }

                position = stop;
            }

            await AfterChangeAsync(flags, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Refuses, before anything changes, a FAST_ZERO request that would have to write data:
    /// over a backing file in a v2 image (no zero flag), or into a partial cluster that does not
    /// read as zero already. A partial cluster that does (a zero cluster, or an unallocated one
    /// with no backing file) needs nothing written, so the request is fast, as QEMU's
    /// qcow2_co_pwrite_zeroes finds when it checks the rest of such a cluster. The last cluster
    /// of a disk whose size is not a multiple of the cluster size is whole when the request
    /// reaches the end of the disk.
    /// </summary>
    private async ValueTask CheckFastZeroAsync(long offset, long end, CancellationToken cancellationToken)
    {
        if (_header.Version < 3 && HasBackingFile)
        {
            throw new NotSupportedException($"{Path}: zeroing over a backing file writes data in a version 2 image");
        }

        var bits = _header.ClusterBits;
        foreach (var cluster in (long[])[offset >> bits, (end - 1) >> bits])
        {
            var clusterStart = cluster << bits;
            var clusterEnd = Math.Min(clusterStart + _header.ClusterSize, VirtualSize);
            var whole = offset <= clusterStart && end >= clusterEnd;
            if (whole)
            {
                continue;
            }

            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            if (!ReadsZero(entry) && !await BackingReadsZeroAsync(cluster, entry, cancellationToken).ConfigureAwait(false))
            {
                throw new NotSupportedException($"{Path}: zeroing part of cluster {cluster} would write data");
            }
        }
    }

    /// <summary>
    /// The cluster reads as zeroes without reading its data: a zero cluster, or unallocated with
    /// nothing behind it. An image open without its backing chain whose header names a backing
    /// file (<see cref="OpenDetachedAsync"/>) has something behind it: once opened with its
    /// chain, an unallocated cluster reads the backing file's data, so zeroing it needs the zero
    /// flag.
    /// </summary>
    private bool ReadsZero(L2Entry entry)
        => entry.Kind is ClusterKind.ZeroPlain or ClusterKind.ZeroAllocated
            || (entry.Kind == ClusterKind.Unallocated && !HasBackingFile);

    /// <summary>
    /// Something lies behind the image's unallocated clusters: a backing file open with it, or
    /// one its header names although it was opened without its chain (<see cref="OpenDetachedAsync"/>),
    /// which shows through once the image is opened with its chain.
    /// </summary>
    private bool HasBackingFile => _backing is not null || _header.BackingFile is not null;

    /// <summary>
    /// The cluster is unallocated and the backing file reads as zeroes all through it (or ends
    /// before it), as QEMU's is_zero asks of the rest of a cluster before zeroing part of it:
    /// zeroing part of such a cluster has nothing to write.
    /// </summary>
    private async ValueTask<bool> BackingReadsZeroAsync(long cluster, L2Entry entry, CancellationToken cancellationToken)
    {
        if (entry.Kind != ClusterKind.Unallocated || _backing is null)
        {
            return false;
        }

        var start = cluster << _header.ClusterBits;
        var end = Math.Min(Math.Min(start + _header.ClusterSize, VirtualSize), _backing.VirtualSize);
        var position = start;
        while (position < end)
        {
            var extents = await _backing.GetExtentsAsync(position, end - position, cancellationToken).ConfigureAwait(false);
            if (extents.Count == 0)
            {
                return false;
            }

            foreach (var extent in extents)
            {
                if ((extent.Kind & ExtentKind.Zero) == 0 || extent.Offset > position)
                {
                    return false;
                }

                position = Math.Max(position, extent.End);
            }
        }

        return true;
    }

    public async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // QEMU dirties bitmaps for discards it processes (formats.md §2.6, last point).
            MarkBitmapsDirty(offset, length);
            var bits = _header.ClusterBits;
            var first = (offset + _header.ClusterSize - 1) >> bits;
            var endCluster = offset + length == VirtualSize ? (VirtualSize + _header.ClusterSize - 1) >> bits : (offset + length) >> bits;

            // Only whole clusters are discarded; partial ones keep their data, which discard allows.
            // Over a backing file, v3 masks every discarded cluster with a zero entry, the
            // unallocated ones too, so that a discarded range reads as zeroes rather than as the
            // backing file's data (QEMU's discard_in_l2_slice: "make sure that a discarded area
            // reads back as zeroes for unallocated and preallocated clusters as well"); v2 has
            // no zero flag and lets the backing data show through.
            var replacement = HasBackingFile && _header.Version >= 3 ? Qcow2Layout.OflagZero : 0;
            for (var cluster = first; cluster < endCluster; cluster++)
            {
                var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
                var unchanged = replacement == 0 ? entry.Kind == ClusterKind.Unallocated : entry.Kind == ClusterKind.ZeroPlain;
                if (unchanged)
                {
                    continue;
                }

                await SetEntryAsync(cluster, replacement, cancellationToken).ConfigureAwait(false);
                Release(entry);
            }

            await AfterChangeAsync(WriteFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (IsReadOnly)
        {
            return;
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Writes one whole cluster compressed (formats.md §1.5.3) into an unallocated guest cluster,
    /// as <c>qemu-img convert -c</c> does. Clusters that do not shrink are written normally.
    /// The last cluster of an image whose size is not cluster aligned may be short.
    /// </summary>
    public async ValueTask WriteCompressedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        var clusterSize = _header.ClusterSize;
        if ((offset & (clusterSize - 1)) != 0 || (data.Length != clusterSize && offset + data.Length != VirtualSize))
        {
            throw new ArgumentException($"{Path}: compressed writes take one whole cluster at a cluster boundary", nameof(data));
        }

        var cluster = new byte[clusterSize];
        data.Span.CopyTo(cluster);
        var compressed = CompressedCluster.Compress(_header.CompressionType, cluster);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            MarkBitmapsDirty(offset, data.Length);
            var guestCluster = offset >> _header.ClusterBits;
            var entry = await _map.GetEntryAsync(guestCluster, cancellationToken).ConfigureAwait(false);
            if (compressed is null || entry.Kind != ClusterKind.Unallocated)
            {
                await WriteLockedAsync(offset, data, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var host = await AllocateCompressedBytesAsync(compressed.Length, cancellationToken).ConfigureAwait(false);

                // Counted now: written and mapped whatever the token says, or it leaks.
                await WriteDataLockedAsync(host, compressed, CancellationToken.None).ConfigureAwait(false);
                await SetEntryAsync(guestCluster, L2Entry.Compressed(host, compressed.Length, _header.ClusterBits), CancellationToken.None).ConfigureAwait(false);
            }

            await AfterChangeAsync(WriteFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Compressed streams are packed byte by byte into a cluster reserved for them; each stream
    /// placed there adds one reference to it (§1.5.3 refcounting).
    /// </summary>
    private async ValueTask<long> AllocateCompressedBytesAsync(int length, CancellationToken cancellationToken)
    {
        // A cluster whose refcount is at its maximum (1-bit refcounts hold one reference) takes no more streams.
        if (_compressedNext != 0 && length <= _compressedEnd - _compressedNext
            && await _refcounts.GetAsync(_compressedNext >> _header.ClusterBits, cancellationToken).ConfigureAwait(false) < _refcounts.MaxRefcount)
        {
            await _refcounts.ChangeAsync(_compressedNext >> _header.ClusterBits, +1, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            _compressedNext = await _refcounts.AllocateAsync(1, cancellationToken).ConfigureAwait(false);
            _compressedEnd = _compressedNext + _header.ClusterSize;
        }

        var at = _compressedNext;
        _compressedNext += length;
        return at;
    }

    private async ValueTask WriteLockedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        var done = 0;
        while (done < data.Length)
        {
            var position = offset + done;
            var cluster = position >> bits;
            var inCluster = (int)(position & (clusterSize - 1));
            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            var (l1, _) = _map.Locate(cluster);
            var inPlace = entry.Kind == ClusterKind.Normal && entry.IsCopied && (_map.L1Entry(l1) & Qcow2Layout.OflagCopied) != 0;
            if (inPlace)
            {
                // Overwrite in place, extended over host-contiguous clusters that are writable too.
                var length = (long)clusterSize - inCluster;
                while (done + length < data.Length)
                {
                    var nextCluster = cluster + ((inCluster + length) >> bits);
                    var next = await _map.GetEntryAsync(nextCluster, cancellationToken).ConfigureAwait(false);
                    var (nextL1, _) = _map.Locate(nextCluster);
                    if (next.Kind != ClusterKind.Normal || !next.IsCopied || (_map.L1Entry(nextL1) & Qcow2Layout.OflagCopied) == 0 || next.HostOffset != entry.HostOffset + inCluster + length)
                    {
                        break;
                    }

                    length += clusterSize;
                }

                var count = (int)Math.Min(length, data.Length - done);
                await WriteDataLockedAsync(entry.HostOffset + inCluster, data.Slice(done, count), cancellationToken).ConfigureAwait(false);
                done += count;
                continue;
            }

            if (inCluster == 0 && data.Length - done >= clusterSize)
            {
                // Whole clusters need no copy-on-write: gather the following ones that need new
                // host clusters too and write them with one allocation and one file write.
                var run = 1;
                while (run < MaxClustersPerWrite && data.Length - done >= (long)(run + 1) * clusterSize)
                {
                    var next = await _map.GetEntryAsync(cluster + run, cancellationToken).ConfigureAwait(false);
                    var (nextL1, _) = _map.Locate(cluster + run);
                    if (next.Kind == ClusterKind.Normal && next.IsCopied && (_map.L1Entry(nextL1) & Qcow2Layout.OflagCopied) != 0)
                    {
                        break;
                    }

                    run++;
                }

                await WriteWholeClustersAsync(cluster, run, data.Slice(done, run * clusterSize), cancellationToken).ConfigureAwait(false);
                done += run * clusterSize;
                continue;
            }

            var n = Math.Min(clusterSize - inCluster, data.Length - done);
            await WriteNewClusterAsync(cluster, entry, inCluster, data.Slice(done, n), cancellationToken).ConfigureAwait(false);
            done += n;
        }
    }

    /// <summary>
    /// Largest data write made on the calling thread under the lock: a pull backup's scratch
    /// copies and guest writes. Larger ones (a convert's 1 MiB runs) still
    /// go through the pool, whose hand-off costs little next to their copy: with 8 copy
    /// workers, converting 1 GiB with every write on the calling thread measured no faster.
    /// </summary>
    private const int InlineWriteLimit = 256 << 10;

    /// <summary>Writes guest data while holding the lock (see the top of this file).</summary>
    private ValueTask WriteDataLockedAsync(long host, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => data.Length <= InlineWriteLimit ? _file.WriteOnCallingThreadAsync(host, data, cancellationToken) : _file.WriteAsync(host, data, cancellationToken);

    /// <summary>Longest run of whole clusters written with one allocation (bounds the write size at 2 MiB clusters to 64 MiB).</summary>
    private const int MaxClustersPerWrite = 32;

    /// <summary>
    /// Writes <paramref name="count"/> whole guest clusters into newly allocated, contiguous host
    /// clusters: L2 tables first (so they do not split the data run), then the data, then the
    /// entries; the old clusters are released (freed after the next write-back).
    /// </summary>
    private async ValueTask WriteWholeClustersAsync(long cluster, int count, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        for (var i = 0; i < count; i++)
        {
            await EnsureWritableL2Async(cluster + i, cancellationToken).ConfigureAwait(false);
        }

        var host = await _refcounts.AllocateAsync(count, cancellationToken).ConfigureAwait(false);

        // From the allocation on, a cancellation would leave the clusters counted and unmapped
        // (leaked): the write and its entries finish whatever the caller's token says.
        try
        {
            await WriteDataLockedAsync(host, data, CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            GiveBack(host, count);
            throw;
        }
        for (var i = 0; i < count; i++)
        {
            var old = await _map.GetEntryAsync(cluster + i, CancellationToken.None).ConfigureAwait(false);
            await SetEntryAsync(cluster + i, (ulong)(host + ((long)i << _header.ClusterBits)) | Qcow2Layout.OflagCopied, CancellationToken.None).ConfigureAwait(false);
            Release(old);
        }
    }

    /// <summary>
    /// Copy-on-write into a freshly allocated host cluster: the rest of the cluster comes from
    /// the old content (shared or compressed data, the backing file, or zeroes). Before the L2
    /// entry points at the new cluster its refcount is raised and its data written (ordering
    /// made durable by <see cref="FlushMetadataAsync"/>).
    /// </summary>
    private async ValueTask WriteNewClusterAsync(long cluster, L2Entry old, int inCluster, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var clusterSize = _header.ClusterSize;
        var highWater = Math.Max(_refcounts.HighWater, _refcounts.FileClustersAtOpen);
        await EnsureWritableL2Async(cluster, cancellationToken).ConfigureAwait(false);
        var host = await _refcounts.AllocateAsync(1, cancellationToken).ConfigureAwait(false);

        // From here on the token is not honoured: a cancelled copy-on-write would leak the cluster.

        // A cluster past everything the file ever held reads as zeroes without being written.
        var fresh = (host >> _header.ClusterBits) >= highWater;
        var clusterStart = cluster << _header.ClusterBits;
        var oldIsZero = old.Kind is ClusterKind.ZeroPlain or ClusterKind.ZeroAllocated
            || (old.Kind == ClusterKind.Unallocated && (_backing is null || clusterStart >= _backing.VirtualSize));
        try
        {
            if (data.Length == clusterSize || (fresh && oldIsZero))
            {
                await WriteDataLockedAsync(host + inCluster, data, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await CopyOnWriteAsync(host, old, clusterStart, inCluster, data).ConfigureAwait(false);
            }
        }
        catch
        {
            GiveBack(host, 1);
            throw;
        }

        await SetEntryAsync(cluster, (ulong)host | Qcow2Layout.OflagCopied, CancellationToken.None).ConfigureAwait(false);
        Release(old);
    }

    // The rest of the cluster from the old content, then the whole cluster written.
    private async ValueTask CopyOnWriteAsync(long host, L2Entry old, long clusterStart, int inCluster, ReadOnlyMemory<byte> data)
    {
        var clusterSize = _header.ClusterSize;
        var content = new byte[clusterSize];
        var valid = (int)Math.Min(clusterSize, VirtualSize - clusterStart);
        switch (old.Kind)
        {
            case ClusterKind.Normal:
                await _file.ReadAsync(old.HostOffset, content.AsMemory(0, valid), CancellationToken.None).ConfigureAwait(false);
                break;
            case ClusterKind.Compressed:
                content = await ReadCompressedAsync(old, CancellationToken.None).ConfigureAwait(false);
                break;
            case ClusterKind.Unallocated:
                await ReadBackingAsync(clusterStart, content.AsMemory(0, valid), CancellationToken.None).ConfigureAwait(false);
                break;
        }

        data.CopyTo(content.AsMemory(inCluster));
        await WriteDataLockedAsync(host, content, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Whole-cluster write-zeroes: the zero flag where the format has it (v3), else deallocation or data.</summary>
    private async ValueTask ZeroClusterAsync(long cluster, L2Entry entry, bool readsZero, bool mayUnmap, CancellationToken cancellationToken)
    {
        if (readsZero && !(mayUnmap && entry.Kind == ClusterKind.ZeroAllocated))
        {
            return;
        }

        if (_header.Version < 3)
        {
            if (!HasBackingFile)
            {
                await SetEntryAsync(cluster, 0, cancellationToken).ConfigureAwait(false);
                Release(entry);
            }
            else
            {
                // v2 has no zero flag: zeroes over a backing file must be written as data.
                var start = cluster << _header.ClusterBits;
                await WriteLockedAsync(start, new byte[Math.Min(_header.ClusterSize, VirtualSize - start)], cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        if (!mayUnmap && entry.Kind == ClusterKind.Normal && entry.IsCopied)
        {
            // Keep the host cluster preallocated ("zero alloc", §1.5.2).
            await SetEntryAsync(cluster, entry.Raw | Qcow2Layout.OflagZero, cancellationToken).ConfigureAwait(false);
            return;
        }

        await SetEntryAsync(cluster, Qcow2Layout.OflagZero, cancellationToken).ConfigureAwait(false);
        Release(entry);
    }

    /// <summary>
    /// Gives back clusters just allocated at <paramref name="host"/> whose data could not be
    /// written (the host out of space, an I/O error) and which nothing maps yet, as QEMU's
    /// qcow2_alloc_cluster_abort frees them: a failed guest write leaks nothing, and its retry (a
    /// domain resumed after its pause for the error) can take them again.
    /// </summary>
    private void GiveBack(long host, int count) => _refcounts.QueueFree(host, count);

    /// <summary>Queues the references an entry held for freeing (applied after the next mapping write-back).</summary>
    private void Release(L2Entry entry)
    {
        switch (entry.Kind)
        {
            case ClusterKind.Normal or ClusterKind.ZeroAllocated:
                _refcounts.QueueFree(entry.HostOffset, 1);
                break;
            case ClusterKind.Compressed:
                var first = entry.CompressedOffset >> _header.ClusterBits;
                var last = (entry.CompressedOffset + entry.CompressedLength - 1) >> _header.ClusterBits;
                for (var c = first; c <= last; c++)
                {
                    _refcounts.QueueFree(c << _header.ClusterBits, 1);
                }

                break;
        }
    }

    private async ValueTask SetEntryAsync(long cluster, ulong raw, CancellationToken cancellationToken)
    {
        var table = await EnsureWritableL2Async(cluster, cancellationToken).ConfigureAwait(false);
        var (_, l2) = _map.Locate(cluster);
        table.Set(l2, raw);
    }

    /// <summary>
    /// The L2 table for <paramref name="cluster"/>, ready to change: allocated when missing, and
    /// copied when shared with an internal snapshot (L1 entry without COPIED, §1.6). The shared
    /// table's entries already lack COPIED (their clusters are counted once per path).
    /// </summary>
    private async ValueTask<L2Table> EnsureWritableL2Async(long cluster, CancellationToken cancellationToken)
    {
        var (l1, _) = _map.Locate(cluster);
        var l1Entry = _map.L1Entry(l1);
        var table = await _map.GetL2Async(l1, cancellationToken).ConfigureAwait(false);
        if (table is not null && (l1Entry & Qcow2Layout.OflagCopied) != 0)
        {
            return table;
        }

        var host = await _refcounts.AllocateAsync(1, cancellationToken).ConfigureAwait(false);
        if (table is null)
        {
            var created = new L2Table(host, new ulong[_header.ClusterSize / 8], _header.HasExtendedL2);
            _map.Install(l1, created);
            return created;
        }

        // References are counted per path (L1 -> L2 -> entry, formats.md §1.7): the snapshot's L1
        // keeps the old table and the copy takes over the active path, so data refcounts stay as
        // they are; only the old table loses the active L1's reference.
        var copy = table.CopyTo(host);
        _map.Install(l1, copy);
        _refcounts.QueueFree(table.HostOffset, 1);
        return copy;
    }

    private async ValueTask AfterChangeAsync(WriteFlags flags, CancellationToken cancellationToken)
    {
        if ((flags & WriteFlags.ForceUnitAccess) != 0 || _map.NeedsWriteBack)
        {
            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The ordered write-back described at the top of this file. Caller holds the lock.</summary>
    private async ValueTask FlushMetadataAsync(CancellationToken cancellationToken)
    {
        try
        {
            await FlushMetadataCoreAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Break(e, "writing back metadata");
        }
    }

    private async ValueTask FlushMetadataCoreAsync(CancellationToken cancellationToken)
    {
        await _refcounts.WriteBackAsync(cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (_map.IsDirty)
        {
            await _map.WriteBackAsync(cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        if (_refcounts.HasPendingFrees)
        {
            // The clusters about to be freed may still be the target of requests that resolved
            // them before the mapping changed and read or write without the lock (see the
            // class remarks); none can start while the lock is held.
            await _inFlight.DrainAsync().ConfigureAwait(false);
            await _refcounts.ApplyFreesAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
