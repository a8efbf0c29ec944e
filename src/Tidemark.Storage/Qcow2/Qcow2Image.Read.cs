namespace Tidemark.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// The internal snapshots (formats.md §1.6), read from the snapshot table and checked entry
    /// by entry; Tidemark keeps them and counts their clusters but never switches to one.
    /// </summary>
    /// <exception cref="StorageException">An entry breaks one of QEMU's limits (the message names it).</exception>
    public async ValueTask<IReadOnlyList<Qcow2Snapshot>> ReadSnapshotsAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var table = await SnapshotTable.ReadAsync(_file, _header, cancellationToken).ConfigureAwait(false);
        return [.. table.Entries.Select(e => e.Snapshot)];
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        cancellationToken.ThrowIfCancellationRequested();
        DataRuns runs;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            runs = await ResolveReadLockedAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
            if (runs.Count == 0)
            {
                return;
            }

            _inFlight.Enter();
        }
        finally
        {
            _lock.Release();
        }

        // The data itself is read without the lock (qcow2_co_preadv_part drops s->lock around
        // the data I/O); the clusters resolved above cannot be freed until this leaves.
        try
        {
            if (DataIoUnlocked is { } seam)
            {
                await seam().ConfigureAwait(false);
            }

            for (var i = 0; i < runs.Count; i++)
            {
                var run = runs[i];
                var target = buffer.Slice(run.BufferOffset, run.Length);
                if (run.Host >= 0)
                {
                    await _file.ReadAsync(run.Host, target, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await ReadBackingAsync(offset + run.BufferOffset, target, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _inFlight.Exit();
        }
    }

    /// <summary>
    /// Resolves a read under the lock: zero clusters are filled here, compressed clusters and
    /// extended-L2 subclusters are read here (their decoding needs the mapping to stay put), and
    /// the returned runs (plain data clusters, host-contiguous, and backing-file ranges) are left
    /// for the caller to read after releasing the lock.
    /// </summary>
    private async ValueTask<DataRuns> ResolveReadLockedAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        var runs = default(DataRuns);
        var done = 0;
        while (done < buffer.Length)
        {
            var position = offset + done;
            var cluster = position >> bits;
            var inCluster = (int)(position & (clusterSize - 1));
            var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
            if (_header.HasExtendedL2 && !entry.IsCompressed)
            {
                var n = Math.Min(clusterSize - inCluster, buffer.Length - done);
                await ReadSubclustersAsync(entry, position, buffer.Slice(done, n), cancellationToken).ConfigureAwait(false);
                done += n;
                continue;
            }

            // Extend over following clusters of the same kind (host-contiguous for data) so large
            // reads become few large file reads.
            var kind = entry.Kind;
            var length = (long)clusterSize - inCluster;
            while (done + length < buffer.Length && kind is not ClusterKind.Compressed)
            {
                var next = await _map.GetEntryAsync(cluster + ((inCluster + length) >> bits), cancellationToken).ConfigureAwait(false);
                var same = next.Kind == kind && (kind != ClusterKind.Normal || next.HostOffset == entry.HostOffset + inCluster + length);
                if (!same)
                {
                    break;
                }

                length += clusterSize;
            }

            var count = (int)Math.Min(length, buffer.Length - done);
            var target = buffer.Slice(done, count);
            switch (kind)
            {
                case ClusterKind.Normal:
                    runs.Add(new DataRun(done, count, entry.HostOffset + inCluster));
                    break;
                case ClusterKind.ZeroPlain or ClusterKind.ZeroAllocated:
                    target.Span.Clear();
                    break;
                case ClusterKind.Unallocated:
                    runs.Add(new DataRun(done, count, -1));
                    break;
                case ClusterKind.Compressed:
                    var data = await ReadCompressedAsync(entry, cancellationToken).ConfigureAwait(false);
                    data.AsMemory(inCluster, count).CopyTo(target);
                    break;
            }

            done += count;
        }

        return runs;
    }

    /// <summary>Extended L2 (formats.md §1.5.4): each of the 32 subclusters is data, zero or from the backing file.</summary>
    private async ValueTask ReadSubclustersAsync(L2Entry entry, long position, Memory<byte> target, CancellationToken cancellationToken)
    {
        var clusterSize = _header.ClusterSize;
        var subSize = clusterSize / Qcow2Layout.SubclustersPerCluster;
        var done = 0;
        while (done < target.Length)
        {
            var inCluster = (int)((position + done) & (clusterSize - 1));
            var sub = inCluster / subSize;
            var n = Math.Min(subSize - (inCluster % subSize), target.Length - done);
            var slice = target.Slice(done, n);
            if ((entry.SubclusterBitmap & (1UL << sub)) != 0)
            {
                await _file.ReadAsync(entry.HostOffset + inCluster, slice, cancellationToken).ConfigureAwait(false);
            }
            else if ((entry.SubclusterBitmap & (1UL << (sub + 32))) != 0)
            {
                slice.Span.Clear();
            }
            else
            {
                await ReadBackingAsync(position + done, slice, cancellationToken).ConfigureAwait(false);
            }

            done += n;
        }
    }

    /// <summary>Unallocated data: the backing file's bytes, zeroes past its end or without one.</summary>
    private async ValueTask ReadBackingAsync(long position, Memory<byte> target, CancellationToken cancellationToken)
    {
        if (_backing is null || position >= _backing.VirtualSize)
        {
            target.Span.Clear();
            return;
        }

        var inBacking = (int)Math.Min(target.Length, _backing.VirtualSize - position);
        await _backing.ReadAsync(position, target[..inBacking], cancellationToken).ConfigureAwait(false);
        target.Span[inBacking..].Clear();
    }

    private async ValueTask<byte[]> ReadCompressedAsync(L2Entry entry, CancellationToken cancellationToken)
    {
        var input = new byte[entry.CompressedLength];
        await _file.ReadAsync(entry.CompressedOffset, input, cancellationToken).ConfigureAwait(false);
        var cluster = new byte[_header.ClusterSize];
        CompressedCluster.Decompress(_header.CompressionType, input, cluster, Path, entry.CompressedOffset);
        return cluster;
    }

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => GetExtentsAsync(offset, length, int.MaxValue, cancellationToken);

    /// <summary>
    /// The allocation of the top <paramref name="layers"/> images of the chain only: with 1, what
    /// this image itself allocates (QEMU's bdrv_block_status_above with this image's backing file
    /// as the base; bdrv_is_allocated). Ranges none of the consulted layers allocates are depth 0:
    /// <see cref="ExtentKind.Hole"/> where a layer further down may supply them, hole and zero
    /// where nothing below reaches (no backing file, or past its end). Data runs are checked
    /// against the host file as <see cref="GetExtentsAsync(long, long, CancellationToken)"/> does.
    /// </summary>
    /// <remarks>
    /// What rebase and convert -B need: only what the top allocates can differ from a backing
    /// file the top already sits on, and the layers below need not be read to know it.
    /// </remarks>
    /// <param name="layers">How many images, from this one down, to consult (at least 1).</param>
    public async ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, int layers, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        cancellationToken.ThrowIfCancellationRequested();
        var extents = new List<BlockExtent>();
        if (length == 0)
        {
            return extents;
        }

        var local = await ScanLayerAsync(offset, offset + length, cancellationToken).ConfigureAwait(false);
        try
        {
            await ResolveLayerAsync(local, extents, layers, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Exit();
        }

        return extents;
    }

    /// <summary>
    /// The second half of <see cref="GetExtentsAsync(long, long, int, CancellationToken)"/>,
    /// outside the lock: data runs against the host file's holes (in a metadata-preallocated
    /// image only), unallocated runs against the backing chain. The caller is counted in flight,
    /// so the host clusters stay put.
    /// </summary>
    private async ValueTask ResolveLayerAsync(List<(long Start, long End, ExtentKind Kind, int Depth, long Host)> local, List<BlockExtent> extents, int layers, CancellationToken cancellationToken)
    {
        foreach (var (start, stop, kind, depth, host) in local)
        {
            if (host >= 0 && _metadataPreallocated == true)
            {
                // A metadata-preallocated image: QEMU asks the file under a data cluster too
                // (BDRV_BLOCK_RECURSE in bdrv_co_block_status with want_zero): where the host file
                // has a hole, or ends, the guest reads zeroes, so that part is data and zero
                // (qemu-img map "zero": true, "data": true; NBD_STATE_ZERO). Otherwise the
                // cluster is data throughout, as QEMU reports it.
                foreach (var run in _file.FindData(host, host + (stop - start), int.MaxValue))
                {
                    Append(extents, new BlockExtent(start + (run.Start - host), run.End - run.Start, run.IsData ? ExtentKind.Data : ExtentKind.Zero, depth));
                }

                continue;
            }

            if (depth != 0 || _backing is null || start >= _backing.VirtualSize)
            {
                Append(extents, new BlockExtent(start, stop - start, kind, depth));
                continue;
            }

            var backingEnd = Math.Min(stop, _backing.VirtualSize);
            if (layers == 1)
            {
                // Not here, and the layers below are not consulted: whatever they hold shows.
                Append(extents, new BlockExtent(start, backingEnd - start, ExtentKind.Hole, 0));
            }
            else
            {
                // Depth 0 here means "not in this layer": ask the backing chain, one level deeper.
                var position = start;
                while (position < backingEnd)
                {
                    var below = _backing is Qcow2Image q
                        ? await q.GetExtentsAsync(position, backingEnd - position, layers - 1, cancellationToken).ConfigureAwait(false)
                        : await _backing.GetExtentsAsync(position, backingEnd - position, cancellationToken).ConfigureAwait(false);
                    foreach (var e in below)
                    {
                        Append(extents, e with { Depth = e.Depth == 0 ? 0 : e.Depth + 1 });
                        position = e.End;
                    }
                }
            }

            if (backingEnd < stop)
            {
                Append(extents, new BlockExtent(backingEnd, stop - backingEnd, ExtentKind.Hole | ExtentKind.Zero, 0));
            }
        }
    }

    /// <summary>
    /// This layer's own allocation of <c>[offset, end)</c> from its L1/L2 tables, in runs of the
    /// same kind (at most 4096; the caller reports where they end). Depth is 1 where this image
    /// allocates, 0 where it does not. Host is where a data run's bytes start in this image's
    /// file (-1: not a plain host range, as compressed clusters). Unallocated runs are resolved
    /// against the backing file, and data runs against the host file's holes (when the image is
    /// metadata-preallocated), by the caller after the lock is released; the caller is counted in flight on return (it must call
    /// <see cref="InFlightDataIo.Exit"/>), so the host clusters it reports are not freed meanwhile.
    /// </summary>
    private async ValueTask<List<(long Start, long End, ExtentKind Kind, int Depth, long Host)>> ScanLayerAsync(long offset, long end, CancellationToken cancellationToken)
    {
        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        var l2Span = (long)_header.L2Entries << bits;
        var local = new List<(long Start, long End, ExtentKind Kind, int Depth, long Host)>();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            await DetectMetadataPreallocationAsync(cancellationToken).ConfigureAwait(false);
            var position = offset;

            // The L2 table of the cluster being scanned, looked up once per table rather than
            // once per cluster (32,768 asynchronous look-ups for a 2 GiB image at 64 KiB).
            var tableIndex = -1;
            L2Table? table = null;
            while (position < end && local.Count < 4096)
            {
                var cluster = position >> bits;
                var (l1, l2) = _map.Locate(cluster);
                long stop;
                ExtentKind kind;
                int depth;
                var host = -1L;
                if ((_map.L1Entry(l1) & Qcow2Layout.L1OffsetMask) == 0)
                {
                    stop = Math.Min(end, (l1 + 1) * l2Span);
                    (kind, depth) = (ExtentKind.Hole | ExtentKind.Zero, 0);
                }
                else
                {
                    if (l1 != tableIndex)
                    {
                        table = await _map.GetL2Async(l1, cancellationToken).ConfigureAwait(false);
                        tableIndex = l1;
                    }

                    var entry = _map.EntryOf(table, l2);
                    stop = Math.Min(end, (cluster + 1) << bits);
                    if (_header.HasExtendedL2 && !entry.IsCompressed)
                    {
                        var subSize = clusterSize / Qcow2Layout.SubclustersPerCluster;
                        var sub = (int)((position & (clusterSize - 1)) / subSize);
                        stop = Math.Min(end, (cluster << bits) + ((sub + 1L) * subSize));
                        (kind, depth) = (entry.SubclusterBitmap & (1UL << sub)) != 0 ? (ExtentKind.Data, 1)
                            : (entry.SubclusterBitmap & (1UL << (sub + 32))) != 0 ? (ExtentKind.Hole | ExtentKind.Zero, 1)
                            : (ExtentKind.Hole | ExtentKind.Zero, 0);
                        if (kind == ExtentKind.Data)
                        {
                            host = entry.HostOffset + (position & (clusterSize - 1));
                        }
                    }
                    else
                    {
                        (kind, depth) = entry.Kind switch
                        {
                            ClusterKind.Normal or ClusterKind.Compressed => (ExtentKind.Data, 1),
                            ClusterKind.ZeroPlain or ClusterKind.ZeroAllocated => (ExtentKind.Hole | ExtentKind.Zero, 1),
                            _ => (ExtentKind.Hole | ExtentKind.Zero, 0),
                        };
                        if (entry.Kind == ClusterKind.Normal)
                        {
                            host = entry.HostOffset + (position & (clusterSize - 1));
                        }
                    }
                }

                var last = local.Count > 0 ? local[^1] : default;
                var continuesHost = last.Host < 0 ? host < 0 : host == last.Host + (last.End - last.Start);
                if (local.Count > 0 && last.End == position && last.Kind == kind && last.Depth == depth && continuesHost)
                {
                    local[^1] = (last.Start, stop, kind, depth, last.Host);
                }
                else
                {
                    local.Add((position, stop, kind, depth, host));
                }

                position = stop;
            }

            _inFlight.Enter();
        }
        finally
        {
            _lock.Release();
        }

        return local;
    }

    /// <summary>
    /// Where the byte at <paramref name="offset"/> lives in this image's file: the host offset for
    /// data and preallocated zero clusters, null for unallocated, zero-plain and compressed ones
    /// (what <c>qemu-img map</c> prints as "offset").
    /// </summary>
    public async ValueTask<long?> GetHostOffsetAsync(long offset, CancellationToken cancellationToken = default)
        => (await GetHostRunsAsync(offset, 1, cancellationToken).ConfigureAwait(false))[0].Host;

    /// <summary>
    /// Where <c>[offset, offset + length)</c> lives in this image's file, in runs over which the
    /// host offset goes on without a jump (qemu-img map splits its ranges where it jumps). Host
    /// is as in <see cref="GetHostOffsetAsync"/>: null for clusters with no plain host range.
    /// </summary>
    /// <remarks>One lock and one L2 look-up per table for the whole range, not per cluster: a
    /// 1 GiB data extent is 16,384 clusters at 64 KiB.</remarks>
    public async ValueTask<IReadOnlyList<HostRun>> GetHostRunsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        var runs = new List<HostRun>();
        var bits = _header.ClusterBits;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            var tableIndex = -1;
            L2Table? table = null;
            for (long position = offset, end = offset + length; position < end;)
            {
                var (l1, l2) = _map.Locate(position >> bits);
                if (l1 != tableIndex)
                {
                    table = await _map.GetL2Async(l1, cancellationToken).ConfigureAwait(false);
                    tableIndex = l1;
                }

                var entry = _map.EntryOf(table, l2);
                var stop = Math.Min(end, ((position >> bits) + 1) << bits);
                long? host = entry.Kind is ClusterKind.Normal or ClusterKind.ZeroAllocated ? entry.HostOffset + (position & (_header.ClusterSize - 1)) : null;
                if (runs.Count > 0 && (host is null ? runs[^1].Host is null : runs[^1].Host + runs[^1].Length == host))
                {
                    runs[^1] = runs[^1] with { Length = runs[^1].Length + (stop - position) };
                }
                else
                {
                    runs.Add(new HostRun(position, stop - position, host));
                }

                position = stop;
            }
        }
        finally
        {
            _lock.Release();
        }

        return runs;
    }

    /// <summary>
    /// Starts reading the file's data under <c>[offset, offset + length)</c> into the page cache
    /// without waiting (<see cref="HostFile.AdviseWillNeed"/>): for reads of scattered clusters
    /// about to come, which then wait for their data together instead of one after another.
    /// </summary>
    public async ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        foreach (var run in await GetHostRunsAsync(offset, length, cancellationToken).ConfigureAwait(false))
        {
            if (run.Host is { } host)
            {
                _file.AdviseWillNeed(host, run.Length);
            }
        }
    }

    private static void Append(List<BlockExtent> extents, BlockExtent extent)
    {
        if (extents.Count > 0 && extents[^1].End == extent.Offset && extents[^1].Kind == extent.Kind && extents[^1].Depth == extent.Depth)
        {
            extents[^1] = extents[^1] with { Length = extents[^1].Length + extent.Length };
        }
        else
        {
            extents.Add(extent);
        }
    }
}
