using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Host cluster allocation: the refcount table and its blocks (formats.md §1.4; QEMU
/// <c>qcow2-refcount.c</c>). Blocks are cached and written back in <see cref="WriteBackAsync"/>;
/// frees are queued and applied only by <see cref="ApplyFreesAsync"/>, after the metadata that
/// stopped referencing the clusters is durable, so a freed cluster is never reused while an
/// on-disk table may still point at it.
/// </summary>
/// <remarks>
/// Not thread-safe: <see cref="Qcow2Image"/> calls it under its metadata lock. Every block of
/// the table stays cached once read (2 bytes per host cluster with 16-bit refcounts: 32 MiB for a
/// 1 TiB host file at 64 KiB clusters), which keeps allocation free of I/O waits on the hot path.
/// </remarks>
internal sealed class RefcountTable
{
    private readonly HostFile _file;
    private readonly int _clusterBits;
    private readonly int _order;
    private readonly int _entriesPerBlockBits;
    private readonly Dictionary<long, RefcountBlock> _blocks = [];
    private readonly List<(long Offset, int Count)> _pendingFrees = [];
    private readonly HashSet<long> _pendingFreeClusters = [];
    private readonly Func<long, int, CancellationToken, ValueTask> _onTableMoved;
    private long[] _table;
    private long _tableOffset;
    private int _tableClusters;
    private bool _tableDirty;
    private long _freeCursor;
    private long _highWater;

    private RefcountTable(HostFile file, Qcow2Header header, long[] table, Func<long, int, CancellationToken, ValueTask> onTableMoved)
    {
        _file = file;
        _clusterBits = header.ClusterBits;
        _order = header.RefcountOrder;
        _entriesPerBlockBits = header.ClusterBits + 3 - header.RefcountOrder;
        _table = table;
        _tableOffset = header.RefcountTableOffset;
        _tableClusters = header.RefcountTableClusters;
        _onTableMoved = onTableMoved;
        FileClustersAtOpen = (file.Length + ClusterSize - 1) >> _clusterBits;
        _highWater = FileClustersAtOpen;
    }

    public int ClusterSize => 1 << _clusterBits;

    /// <summary>The file's size in clusters when it was opened: clusters at or past it were never written before.</summary>
    public long FileClustersAtOpen { get; }

    /// <summary>One past the highest cluster allocated so far (at least the file's size at open).</summary>
    public long HighWater => _highWater;

    /// <summary>Largest refcount the image's refcount width can hold.</summary>
    public ulong MaxRefcount => _order == 6 ? ulong.MaxValue : (1UL << (1 << _order)) - 1;

    public long TableOffset => _tableOffset;

    public int TableClusters => _tableClusters;

    /// <summary>Reads and checks the refcount table; blocks are read on first use.</summary>
    /// <param name="onTableMoved">Rewrites the header to point at a grown table (new offset, clusters); must flush.</param>
    public static async ValueTask<RefcountTable> LoadAsync(HostFile file, Qcow2Header header, Func<long, int, CancellationToken, ValueTask> onTableMoved, CancellationToken cancellationToken)
    {
        var bytes = new byte[(long)header.RefcountTableClusters << header.ClusterBits];
        await file.ReadAsync(header.RefcountTableOffset, bytes, cancellationToken).ConfigureAwait(false);
        var table = new long[bytes.Length / 8];
        var fileEnd = file.Length;
        for (var i = 0; i < table.Length; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(i * 8));
            var at = header.RefcountTableOffset + (i * 8);
            if ((entry & Qcow2Layout.RefcountTableReservedMask) != 0)
            {
                throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: refcount table entry {i} at offset {at} (0x{entry:x16}) has reserved bits set");
            }

            var offset = (long)(entry & Qcow2Layout.RefcountTableOffsetMask);
            if (offset == 0)
            {
                continue;
            }

            if ((offset & (header.ClusterSize - 1)) != 0 || offset < header.ClusterSize)
            {
                throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: refcount table entry {i} at offset {at} points at 0x{offset:x}, which is unaligned or the header");
            }

            if (offset >= fileEnd)
            {
                throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: refcount table entry {i} at offset {at} points at 0x{offset:x}, past the end of the file ({fileEnd} bytes)");
            }

            table[i] = offset;
        }

        return new RefcountTable(file, header, table, onTableMoved);
    }

    /// <summary>The refcount of host cluster <paramref name="clusterIndex"/> (0 when no block covers it).</summary>
    public async ValueTask<ulong> GetAsync(long clusterIndex, CancellationToken cancellationToken)
    {
        var block = await GetBlockAsync(clusterIndex >> _entriesPerBlockBits, cancellationToken).ConfigureAwait(false);
        return block is null ? 0 : block[(int)(clusterIndex & ((1L << _entriesPerBlockBits) - 1))];
    }

    /// <summary>
    /// How many of the clusters below <paramref name="end"/> have a nonzero refcount, counting no
    /// further than <paramref name="limit"/>: each refcount block is looked up once, not once per
    /// cluster.
    /// </summary>
    public async ValueTask<long> CountInUseAsync(long end, long limit, CancellationToken cancellationToken)
    {
        var perBlock = 1L << _entriesPerBlockBits;
        long inUse = 0;
        for (long t = 0; t * perBlock < end && inUse < limit; t++)
        {
            if (await GetBlockAsync(t, cancellationToken).ConfigureAwait(false) is not { } block)
            {
                continue;
            }

            var count = (int)Math.Min(perBlock, end - (t * perBlock));
            for (var i = 0; i < count && inUse < limit; i++)
            {
                inUse += block[i] != 0 ? 1 : 0;
            }
        }

        return inUse;
    }

    /// <summary>
    /// Finds <paramref name="count"/> contiguous free clusters, sets their refcounts to 1 (in the
    /// cache) and returns the host offset of the first. Clusters queued for freeing are not free yet.
    /// </summary>
    /// <remarks>
    /// QEMU's qcow2_alloc_clusters: alloc_clusters_noref finds the run without changing anything,
    /// then update_refcount raises it; when that needs a new refcount block (or a larger table),
    /// the block is placed at the first free cluster, which may lie inside the run just found, so
    /// the search starts again (the -EAGAIN loop). A run may span any number of blocks.
    /// </remarks>
    public async ValueTask<long> AllocateAsync(int count, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        long start;
        while (true)
        {
            start = await FindFreeRunAsync(count, cancellationToken).ConfigureAwait(false);
            var madeBlock = false;
            for (var t = start >> _entriesPerBlockBits; t <= (start + count - 1) >> _entriesPerBlockBits; t++)
            {
                if (!HasBlock(t))
                {
                    await EnsureBlockAsync(t, cancellationToken).ConfigureAwait(false);
                    madeBlock = true;
                }
            }

            if (!madeBlock)
            {
                break;
            }
        }

        for (var c = start; c < start + count; c++)
        {
            await ChangeAsync(c, +1, cancellationToken).ConfigureAwait(false);
        }

        if (count == 1 || start == _freeCursor)
        {
            _freeCursor = start + count;
        }

        _highWater = Math.Max(_highWater, start + count);
        return start << _clusterBits;
    }

    /// <summary>The first run of <paramref name="count"/> free clusters at or after the free cursor; changes nothing.</summary>
    /// <remarks>
    /// The cursor stays put when a run of several clusters is found past it (the smaller gaps
    /// before it stay available to single clusters), so a multi-cluster allocation in an image
    /// full up to its end scans every cluster from the cursor each time: one block is fetched per
    /// block of entries and its entries are read in a plain loop (16,384 clusters of a 1 GiB
    /// image per allocation, where an awaited lookup per cluster cost ~1 ms each time).
    /// </remarks>
    private async ValueTask<long> FindFreeRunAsync(int count, CancellationToken cancellationToken)
    {
        var start = _freeCursor;
        var run = 0;
        var entriesMask = (1L << _entriesPerBlockBits) - 1;
        for (var index = _freeCursor; run < count;)
        {
            // A cluster no block covers has refcount 0 (formats.md §1.4).
            var block = await GetBlockAsync(index >> _entriesPerBlockBits, cancellationToken).ConfigureAwait(false);
            var blockEnd = (index | entriesMask) + 1;
            for (; index < blockEnd && run < count; index++)
            {
                var free = (block is null || block[(int)(index & entriesMask)] == 0) && !_pendingFreeClusters.Contains(index);
                if (!free)
                {
                    run = 0;
                    continue;
                }

                if (run == 0)
                {
                    start = index;
                }

                run++;
            }
        }

        return start;
    }

    private bool HasBlock(long tableIndex) => _blocks.ContainsKey(tableIndex) || (tableIndex < _table.Length && _table[tableIndex] != 0);

    /// <summary>
    /// Makes the refcount block for <paramref name="tableIndex"/> exist (in the cache), as QEMU's
    /// alloc_refcount_block: at the first free cluster, counting itself when it covers that
    /// cluster, else counted by the block that does (made first when missing). A table too small
    /// for the index is grown first.
    /// </summary>
    private async ValueTask EnsureBlockAsync(long tableIndex, CancellationToken cancellationToken)
    {
        while (!HasBlock(tableIndex))
        {
            if (tableIndex >= _table.Length)
            {
                await GrowTableAsync(tableIndex, cancellationToken).ConfigureAwait(false);
                continue;
            }

            var at = await FindFreeRunAsync(1, cancellationToken).ConfigureAwait(false);
            var atIndex = at >> _entriesPerBlockBits;
            if (atIndex != tableIndex && !HasBlock(atIndex))
            {
                await EnsureBlockAsync(atIndex, cancellationToken).ConfigureAwait(false);
                continue;
            }

            var created = new RefcountBlock(at << _clusterBits, new byte[ClusterSize], _order) { Dirty = true };
            _blocks[tableIndex] = created;
            _table[tableIndex] = created.HostOffset;
            _tableDirty = true;
            await ChangeAsync(at, +1, cancellationToken).ConfigureAwait(false);
            _highWater = Math.Max(_highWater, at + 1);
            if (at == _freeCursor)
            {
                _freeCursor = at + 1;
            }
        }
    }

    /// <summary>Adds <paramref name="delta"/> to a cluster's refcount in the cache; refuses overflow and underflow.</summary>
    public async ValueTask ChangeAsync(long clusterIndex, int delta, CancellationToken cancellationToken)
    {
        // Allocation makes the blocks first (EnsureBlockAsync); every other caller changes clusters
        // that are referenced, so a block covers them.
        var block = await GetBlockAsync(clusterIndex >> _entriesPerBlockBits, cancellationToken).ConfigureAwait(false)
            ?? throw new StorageException(StorageErrorReason.Corrupt, $"{_file.Path}: no refcount block covers cluster {clusterIndex}, which is in use");
        var i = (int)(clusterIndex & ((1L << _entriesPerBlockBits) - 1));
        var value = block[i];
        if (delta > 0 && value > block.MaxRefcount - (ulong)delta)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"{_file.Path}: refcount of cluster {clusterIndex} would overflow {1 << _order}-bit refcounts");
        }

        if (delta < 0 && value < (ulong)-delta)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{_file.Path}: refcount of cluster {clusterIndex} would drop below zero (it is {value})");
        }

        block[i] = delta > 0 ? value + (ulong)delta : value - (ulong)-delta;
        if (delta < 0 && block[i] == 0 && clusterIndex < _freeCursor)
        {
            _freeCursor = clusterIndex;
        }
    }

    /// <summary>Queues one reference drop for each of <paramref name="count"/> clusters; applied by <see cref="ApplyFreesAsync"/>.</summary>
    public void QueueFree(long hostOffset, int count)
    {
        _pendingFrees.Add((hostOffset, count));
        for (var c = 0; c < count; c++)
        {
            _pendingFreeClusters.Add((hostOffset >> _clusterBits) + c);
        }
    }

    public bool HasPendingFrees => _pendingFrees.Count > 0;

    /// <summary>The clusters that the next <see cref="ApplyFreesAsync"/> drops a reference from, ascending.</summary>
    public long[] PendingFreeClusters()
    {
        var clusters = _pendingFreeClusters.ToArray();
        Array.Sort(clusters);
        return clusters;
    }

    /// <summary>True when cached blocks or the table have changes not yet written.</summary>
    public bool IsDirty => _tableDirty || _blocks.Values.Any(b => b.Dirty);

    /// <summary>
    /// Writes changed blocks, then (after an fsync, when the table itself changed) the table
    /// entries that point at new blocks. A crash in between leaves a block nobody points at: a
    /// harmless unreferenced cluster.
    /// </summary>
    public async ValueTask WriteBackAsync(CancellationToken cancellationToken)
    {
        foreach (var block in _blocks.Values)
        {
            if (block.Dirty)
            {
                await _file.WriteAsync(block.HostOffset, block.Data, cancellationToken).ConfigureAwait(false);
                block.Dirty = false;
            }
        }

        if (_tableDirty)
        {
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
            await _file.WriteAsync(_tableOffset, SerializeTable(_table, _tableClusters << _clusterBits), cancellationToken).ConfigureAwait(false);
            _tableDirty = false;
        }
    }

    /// <summary>
    /// Drops the queued references and writes the blocks. Called only once nothing on disk points
    /// at the freed clusters; a crash before the write leaves them leaked, never doubly used.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Corrupt"/>: a refcount would drop below zero (the stored refcounts were wrong); then no refcount has changed.</exception>
    public async ValueTask ApplyFreesAsync(CancellationToken cancellationToken)
    {
        // Validate before mutate: count the drops per cluster and check them all against the
        // stored refcounts first, so damaged refcounts refuse the flush without changing a block.
        var drops = new Dictionary<long, int>();
        foreach (var (offset, count) in _pendingFrees)
        {
            for (var c = 0; c < count; c++)
            {
                var cluster = (offset >> _clusterBits) + c;
                drops[cluster] = drops.GetValueOrDefault(cluster) + 1;
            }
        }

        foreach (var (cluster, drop) in drops)
        {
            var value = await GetAsync(cluster, cancellationToken).ConfigureAwait(false);
            if (value < (ulong)drop)
            {
                throw new StorageException(StorageErrorReason.Corrupt, $"{_file.Path}: refcount of cluster {cluster} would drop below zero (it is {value}, {drop} references are being freed)");
            }
        }

        // Taken out of the queue before applying: a drop can grow the table, which queues the old
        // table's clusters, to be freed by the next flush once the new header is durable.
        _pendingFrees.Clear();
        _pendingFreeClusters.Clear();
        foreach (var (cluster, drop) in drops)
        {
            await ChangeAsync(cluster, -drop, cancellationToken).ConfigureAwait(false);
        }

        await WriteBackAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the refcount blocks that count no cluster but themselves out of the table, as
    /// QEMU's qcow2_shrink_reftable does after a shrink. Which blocks go is decided first, for
    /// all of them; then the table is written and flushed; only then are the references to the
    /// blocks dropped (a block counted by another block loses that reference; one that counts
    /// itself just goes). A crash between the two leaves leaks only.
    /// </summary>
    public async ValueTask DropUnusedBlocksAsync(CancellationToken cancellationToken)
    {
        var unused = new List<long>();
        for (var i = 0L; i < _table.Length; i++)
        {
            if (_table[i] == 0)
            {
                continue;
            }

            var block = (await GetBlockAsync(i, cancellationToken).ConfigureAwait(false))!;
            var own = _table[i] >> _clusterBits;
            var ownIndex = own >> _entriesPerBlockBits == i ? (int)(own & ((1L << _entriesPerBlockBits) - 1)) : -1;
            var empty = true;
            for (var e = 0; e < 1 << _entriesPerBlockBits && empty; e++)
            {
                empty = e == ownIndex || block[e] == 0;
            }

            if (empty)
            {
                unused.Add(i);
            }
        }

        if (unused.Count == 0)
        {
            return;
        }

        var table = (long[])_table.Clone();
        foreach (var i in unused)
        {
            table[i] = 0;
        }

        await _file.WriteAsync(_tableOffset, SerializeTable(table, _tableClusters << _clusterBits), cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        foreach (var i in unused)
        {
            var cluster = _table[i] >> _clusterBits;
            var countsItself = cluster >> _entriesPerBlockBits == i;
            _table[i] = 0;
            _blocks.Remove(i);
            if (!countsItself)
            {
                await ChangeAsync(cluster, -1, cancellationToken).ConfigureAwait(false);
            }
            else if (cluster < _freeCursor)
            {
                _freeCursor = cluster;
            }
        }

        await WriteBackAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The last cluster below <paramref name="fileClusters"/> with a nonzero refcount, or -1 (QEMU's qcow2_get_last_cluster).</summary>
    public async ValueTask<long> LastUsedClusterAsync(long fileClusters, CancellationToken cancellationToken)
    {
        for (var c = fileClusters - 1; c >= 0; c--)
        {
            if (await GetAsync(c, cancellationToken).ConfigureAwait(false) > 0)
            {
                return c;
            }
        }

        return -1;
    }

    private async ValueTask<RefcountBlock?> GetBlockAsync(long tableIndex, CancellationToken cancellationToken)
    {
        if (_blocks.TryGetValue(tableIndex, out var cached))
        {
            return cached;
        }

        if (tableIndex >= _table.Length || _table[tableIndex] == 0)
        {
            return null;
        }

        var data = new byte[ClusterSize];
        await _file.ReadAsync(_table[tableIndex], data, cancellationToken).ConfigureAwait(false);
        var block = new RefcountBlock(_table[tableIndex], data, _order);
        _blocks[tableIndex] = block;
        return block;
    }

    /// <summary>
    /// Moves the refcount table to a larger place past every allocated cluster. Order: new blocks
    /// and the new table are written and flushed; then the header points at the new table (and is
    /// flushed); only then is the old table freed. A crash before the header write leaks the new
    /// clusters; after it, the old table's clusters.
    /// </summary>
    private async ValueTask GrowTableAsync(long neededIndex, CancellationToken cancellationToken)
    {
        var entriesPerCluster = ClusterSize / 8;
        var entriesPerBlock = 1L << _entriesPerBlockBits;
        var newEntries = Math.Max(neededIndex + 1, (long)_table.Length * 2);
        var start = _highWater;
        long newClusters;
        long blockStart;
        List<long> missing;
        while (true)
        {
            newClusters = (newEntries + entriesPerCluster - 1) / entriesPerCluster;
            if ((newClusters << _clusterBits) > Qcow2Layout.MaxRefcountTableBytes)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"{_file.Path}: the refcount table would exceed QEMU's 8 MiB limit");
            }

            // The new table and the blocks describing it sit together after the high water mark;
            // blocks are needed for every table index the new clusters fall into.
            blockStart = start + newClusters;
            missing = [];
            var extra = 0L;
            while (true)
            {
                missing.Clear();
                var end = blockStart + extra;
                for (var t = start / entriesPerBlock; t <= (end - 1) / entriesPerBlock; t++)
                {
                    if ((t >= _table.Length || _table[t] == 0) && !_blocks.ContainsKey(t))
                    {
                        missing.Add(t);
                    }
                }

                if (missing.Count <= extra)
                {
                    break;
                }

                extra = missing.Count;
            }

            var highest = missing.Count == 0 ? neededIndex : Math.Max(neededIndex, missing[^1]);
            if (highest < newEntries)
            {
                break;
            }

            newEntries = highest + 1;
        }

        var table = new long[newClusters * entriesPerCluster];
        Array.Copy(_table, table, _table.Length);
        for (var i = 0; i < missing.Count; i++)
        {
            var offset = (blockStart + i) << _clusterBits;
            _blocks[missing[i]] = new RefcountBlock(offset, new byte[ClusterSize], _order);
            table[missing[i]] = offset;
        }

        var oldOffset = _tableOffset;
        var oldClusters = _tableClusters;
        _table = table;
        _highWater = blockStart + missing.Count;
        for (var c = start; c < _highWater; c++)
        {
            await ChangeAsync(c, +1, cancellationToken).ConfigureAwait(false);
        }

        foreach (var block in _blocks.Values)
        {
            if (block.Dirty)
            {
                await _file.WriteAsync(block.HostOffset, block.Data, cancellationToken).ConfigureAwait(false);
                block.Dirty = false;
            }
        }

        await _file.WriteAsync(start << _clusterBits, SerializeTable(table, (int)(newClusters << _clusterBits)), cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        _tableOffset = start << _clusterBits;
        _tableClusters = (int)newClusters;
        _tableDirty = false;
        await _onTableMoved(_tableOffset, _tableClusters, cancellationToken).ConfigureAwait(false);
        QueueFree(oldOffset, oldClusters);
    }

    private static byte[] SerializeTable(long[] table, int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < table.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), (ulong)table[i]);
        }

        return bytes;
    }
}
