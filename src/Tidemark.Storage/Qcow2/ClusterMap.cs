using System.Buffers;
using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Guest → host mapping through the L1 table and cached L2 tables (formats.md §1.5; QEMU
/// <c>qcow2-cluster.c</c>). The L1 table is held whole; L2 tables are read on first use, checked
/// once, and kept. Changes stay in memory until <see cref="WriteBackAsync"/>, which writes L2
/// tables before the L1 entries that point at new ones.
/// </summary>
/// <remarks>Not thread-safe: <see cref="Qcow2Image"/> calls it under its metadata lock.</remarks>
internal sealed class ClusterMap
{
    /// <summary>
    /// Clean L2 tables beyond this many bytes are dropped from the cache; dirty ones past half of
    /// it ask for a write-back. 64 MiB maps 256 GiB of guest data at 64 KiB clusters.
    /// </summary>
    public const long CacheBytes = 64L << 20;

    private readonly HostFile _file;
    private readonly Qcow2Header _geometry;
    private readonly ulong[] _l1;
    private readonly HashSet<int> _dirtyL1 = [];
    private readonly Dictionary<int, L2Table> _cache = [];
    private readonly int _l2Bits;
    private readonly Func<long> _validEnd;

    private ClusterMap(HostFile file, Qcow2Header header, ulong[] l1, Func<long> validEnd)
    {
        _file = file;
        _geometry = header;
        _l1 = l1;
        _l2Bits = System.Numerics.BitOperations.Log2((uint)header.L2Entries);
        _validEnd = validEnd;
    }

    public int ClusterBits => _geometry.ClusterBits;

    public int ClusterSize => _geometry.ClusterSize;

    public bool ExtendedL2 => _geometry.HasExtendedL2;

    public int L1Size => _l1.Length;

    public bool IsDirty => _dirtyL1.Count > 0 || _cache.Values.Any(t => t.Dirty);

    /// <summary>True when dirty tables fill half the cache: the image should write metadata back.</summary>
    /// <remarks>
    /// Asked after every change, so it counts without LINQ's enumerator allocation, and only
    /// when the cache could hold that many: an image with small clusters keeps thousands of
    /// tables, and counting them on every write was most of a 4 KiB write's time.
    /// </remarks>
    public bool NeedsWriteBack
    {
        get
        {
            if (_cache.Count * (long)ClusterSize <= CacheBytes / 2)
            {
                return false;
            }

            var dirty = 0L;
            foreach (var table in _cache.Values)
            {
                dirty += table.Dirty ? 1 : 0;
            }

            return dirty * ClusterSize > CacheBytes / 2;
        }
    }

    /// <summary>Reads and checks the active L1 table.</summary>
    /// <param name="validEnd">One past the last host byte a table may point into (the allocation high water mark).</param>
    public static async ValueTask<ClusterMap> LoadAsync(HostFile file, Qcow2Header header, Func<long> validEnd, CancellationToken cancellationToken)
    {
        var bytes = new byte[header.L1Size * 8L];
        await file.ReadAsync(header.L1TableOffset, bytes, cancellationToken).ConfigureAwait(false);
        var l1 = new ulong[header.L1Size];
        var end = validEnd();
        for (var i = 0; i < l1.Length; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(i * 8));
            var at = header.L1TableOffset + (i * 8L);
            if ((entry & Qcow2Layout.L1ReservedMask) != 0)
            {
                throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: L1 entry {i} at offset {at} (0x{entry:x16}) has reserved bits set");
            }

            var offset = (long)(entry & Qcow2Layout.L1OffsetMask);
            if (offset != 0)
            {
                if ((offset & (header.ClusterSize - 1)) != 0)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: L1 entry {i} at offset {at} points at unaligned L2 table offset 0x{offset:x}");
                }

                if (offset < header.ClusterSize)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: L1 entry {i} at offset {at} points at the header (cluster 0)");
                }

                if (offset >= end)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"{file.Path}: L1 entry {i} at offset {at} points at L2 table 0x{offset:x}, past the end of the file");
                }
            }

            l1[i] = entry;
        }

        return new ClusterMap(file, header, l1, validEnd);
    }

    public ulong L1Entry(int index) => _l1[index];

    public void SetL1Entry(int index, ulong entry)
    {
        _l1[index] = entry;
        _dirtyL1.Add(index);
    }

    /// <summary>Splits a guest cluster index into (L1 index, L2 index).</summary>
    public (int L1, int L2) Locate(long guestCluster) => ((int)(guestCluster >> _l2Bits), (int)(guestCluster & ((1L << _l2Bits) - 1)));

    /// <summary>The entry of one guest cluster.</summary>
    public async ValueTask<L2Entry> GetEntryAsync(long guestCluster, CancellationToken cancellationToken)
    {
        var (l1, l2) = Locate(guestCluster);
        return EntryOf(await GetL2Async(l1, cancellationToken).ConfigureAwait(false), l2);
    }

    /// <summary>Entry <paramref name="l2Index"/> of <paramref name="table"/> (from <see cref="GetL2Async"/>; null: unallocated).</summary>
    public L2Entry EntryOf(L2Table? table, int l2Index) => table is null
        ? new L2Entry(0, 0, ClusterBits, ExtendedL2)
        : new L2Entry(table.Entry(l2Index), table.Bitmap(l2Index), ClusterBits, ExtendedL2);

    /// <summary>The L2 table of L1 slot <paramref name="l1Index"/>, or null when unallocated.</summary>
    public async ValueTask<L2Table?> GetL2Async(int l1Index, CancellationToken cancellationToken)
    {
        if (_cache.TryGetValue(l1Index, out var cached))
        {
            return cached;
        }

        var offset = (long)(_l1[l1Index] & Qcow2Layout.L1OffsetMask);
        if (offset == 0)
        {
            return null;
        }

        // The file's bytes are only parsed: a pooled buffer, not a new cluster-sized array per table.
        var bytes = ArrayPool<byte>.Shared.Rent(ClusterSize);
        L2Table table;
        try
        {
            await _file.ReadAsync(offset, bytes.AsMemory(0, ClusterSize), cancellationToken).ConfigureAwait(false);
            table = L2Table.Parse(offset, bytes.AsSpan(0, ClusterSize), ExtendedL2);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }

        Check(table, l1Index);
        Evict();
        _cache[l1Index] = table;
        return table;
    }

    /// <summary>Installs a new (or copied) L2 table for <paramref name="l1Index"/>; the L1 entry follows at write-back.</summary>
    public void Install(int l1Index, L2Table table)
    {
        Evict();
        _cache[l1Index] = table;
        table.Dirty = true;
        SetL1Entry(l1Index, (ulong)table.HostOffset | Qcow2Layout.OflagCopied);
    }

    /// <summary>
    /// Forgets the L2 table of <paramref name="l1Index"/> and clears its L1 entry (written at the
    /// next write-back); the caller frees the table's cluster once that entry is durable.
    /// </summary>
    public void Drop(int l1Index)
    {
        _cache.Remove(l1Index);
        SetL1Entry(l1Index, 0);
    }

    /// <summary>
    /// Writes dirty L2 tables, then, when L1 entries changed, flushes so the new tables are
    /// durable and writes the L1 entries. A crash before the L1 write leaves new L2 tables that
    /// nobody references (leaks); after it, a complete mapping.
    /// </summary>
    public async ValueTask WriteBackAsync(CancellationToken cancellationToken)
    {
        foreach (var table in _cache.Values)
        {
            if (table.Dirty)
            {
                await _file.WriteAsync(table.HostOffset, table.Serialize(), cancellationToken).ConfigureAwait(false);
                table.Dirty = false;
            }
        }

        if (_dirtyL1.Count > 0)
        {
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
            var entry = new byte[8];
            foreach (var i in _dirtyL1.Order())
            {
                BinaryPrimitives.WriteUInt64BigEndian(entry, _l1[i]);
                await _file.WriteAsync(_geometry.L1TableOffset + (i * 8L), entry, cancellationToken).ConfigureAwait(false);
            }

            _dirtyL1.Clear();
        }
    }

    private void Evict()
    {
        if ((_cache.Count + 1) * (long)ClusterSize <= CacheBytes)
        {
            return;
        }

        foreach (var key in _cache.Where(kv => !kv.Value.Dirty).Select(kv => kv.Key).Take(Math.Max(1, _cache.Count / 4)).ToList())
        {
            _cache.Remove(key);
        }
    }

    /// <summary>Checks every entry of a table read from disk once (§1.5.2, §1.5.4); later code trusts it.</summary>
    private void Check(L2Table table, int l1Index)
    {
        var end = _validEnd();
        for (var i = 0; i < table.Count; i++)
        {
            var raw = table.Entry(i);
            if (raw == 0 && table.Bitmap(i) == 0)
            {
                continue;
            }

            var at = table.HostOffset + ((long)i * (ExtendedL2 ? 16 : 8));
            var entry = new L2Entry(raw, table.Bitmap(i), ClusterBits, ExtendedL2);
            if (entry.IsCompressed)
            {
                if (entry.IsCopied || (ExtendedL2 && entry.SubclusterBitmap != 0))
                {
                    throw Corrupt(at, l1Index, i, raw, "compressed entry with the COPIED flag or a subcluster bitmap");
                }

                if (entry.CompressedOffset < ClusterSize || entry.CompressedOffset + entry.CompressedLength > end + ClusterSize)
                {
                    throw Corrupt(at, l1Index, i, raw, "compressed data outside the file or in the header");
                }

                continue;
            }

            // Reserved bits of a standard entry are left out by the offset mask, as QEMU's reads
            // do (L2E_OFFSET_MASK): qemu-img map and compare read such an image, and only
            // check reports it ("found l2 entry with reserved bits set", Qcow2Check). With
            // extended L2 the zero flag makes the entry invalid (QCOW2_SUBCLUSTER_INVALID).
            if (ExtendedL2 && (raw & Qcow2Layout.OflagZero) != 0)
            {
                throw Corrupt(at, l1Index, i, raw, "reserved bits set");
            }

            var host = entry.HostOffset;
            if ((host & (ClusterSize - 1)) != 0)
            {
                // QEMU: "Cluster allocation offset %#x unaligned" (qcow2_get_host_offset).
                throw Corrupt(at, l1Index, i, raw, $"cluster allocation offset 0x{host:x} unaligned");
            }

            if (host != 0 && host < ClusterSize)
            {
                throw Corrupt(at, l1Index, i, raw, "points at the header (cluster 0)");
            }

            if (host >= end)
            {
                throw Corrupt(at, l1Index, i, raw, $"points at 0x{host:x}, past the end of the file");
            }

            if (ExtendedL2)
            {
                var alloc = (uint)entry.SubclusterBitmap;
                var zero = (uint)(entry.SubclusterBitmap >> 32);
                if ((alloc & zero) != 0 || (host == 0 && alloc != 0))
                {
                    throw Corrupt(at, l1Index, i, raw, $"subcluster bitmap 0x{entry.SubclusterBitmap:x16} is invalid");
                }
            }
        }
    }

    private StorageException Corrupt(long at, int l1Index, int l2Index, ulong raw, string what)
        => new(StorageErrorReason.Corrupt, $"{_file.Path}: L2 entry {l2Index} of L1 entry {l1Index} at offset {at} (0x{raw:x16}): {what}");
}
