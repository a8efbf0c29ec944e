using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// The counting half of the check (QEMU's <c>calculate_refcounts</c>): every reference to every
/// host cluster, from the header, refcount table and blocks, active and snapshot L1/L2 tables,
/// data, compressed byte ranges, snapshot table and bitmaps. Comparing the counts with the
/// stored refcounts is in <c>RefcountAudit.cs</c>.
/// </summary>
internal sealed partial class RefcountAudit
{
    /// <summary>No request may end past this: 2^63 rounded down to 1 GiB (QEMU's BDRV_MAX_LENGTH).</summary>
    private const long MaxRequestEnd = long.MaxValue & ~((1L << 30) - 1);

    /// <summary>
    /// Reads the snapshot table before anything is counted, as qemu-img check does
    /// (<c>qcow2_check_read_snapshot_table</c>): a table QEMU cannot read fails the check there
    /// (<see cref="Failure"/>, "File too large"), and a v3 entry without the 16 bytes of extra
    /// data every v3 entry has is a corruption. False when the check cannot go on.
    /// </summary>
    public async ValueTask<bool> ReadSnapshotTableAsync(CancellationToken cancellationToken)
    {
        try
        {
            _snapshots = await SnapshotTable.ReadAsync(_file, _header, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            AddCheckError($"ERROR failed to read the snapshot table: {e.Message}");
            Failure = "File too large";
            return false;
        }

        for (var i = 0; i < _snapshots.Entries.Count; i++)
        {
            if (_header.Version >= 3 && _snapshots.Entries[i].ExtraDataSize < SnapshotTable.MinV3ExtraData)
            {
                Corrupt($"ERROR snapshot table entry {i} is incomplete");
            }
        }

        return true;
    }

    /// <summary>
    /// Counts every reference (QEMU's calculate_refcounts, without the COPIED checks). Stops
    /// early, with <see cref="Failure"/> set, where QEMU's check stops.
    /// </summary>
    public async ValueTask CountAsync(CancellationToken cancellationToken)
    {
        // A repair's second pass counts the same table again, which its first pass has read.
        _snapshots ??= await SnapshotTable.ReadAsync(_file, _header, cancellationToken).ConfigureAwait(false);
        Reference(0, ClusterSize, "header");
        Reference(_header.RefcountTableOffset, (long)_header.RefcountTableClusters * ClusterSize, "refcount table");
        var tableBytes = new byte[(long)_header.RefcountTableClusters * ClusterSize];
        await _file.ReadAsync(_header.RefcountTableOffset, tableBytes, cancellationToken).ConfigureAwait(false);
        _refcountTable = new long[tableBytes.Length / 8];
        for (var i = 0; i < _refcountTable.Length; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(tableBytes.AsSpan(i * 8));
            var offset = entry & Qcow2Layout.RefcountTableOffsetMask;
            if ((entry & Qcow2Layout.RefcountTableReservedMask) != 0 || (offset & (ulong)(ClusterSize - 1)) != 0)
            {
                Corrupt($"ERROR refcount table entry {i} is invalid (0x{entry:x16})");
                _unreadableBlocks.Add(i);
                NeedsRebuild = true;
                continue;
            }

            if (offset == 0)
            {
                continue;
            }

            // Unsigned: an entry with its top bit set is past any file, not a negative offset.
            if (offset >> _header.ClusterBits >= (ulong)FileClusters)
            {
                Corrupt($"ERROR refcount block {i} is outside image");
                _unreadableBlocks.Add(i);
                NeedsRebuild = true;
                continue;
            }

            _refcountTable[i] = (long)offset;
            Reference((long)offset, ClusterSize, $"refcount block {i}");
        }

        if (!await WalkL1Async(_header.L1TableOffset, _header.L1Size, active: true, cancellationToken).ConfigureAwait(false)
            || !await WalkSnapshotsAsync(cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        await WalkBitmapsAsync(cancellationToken).ConfigureAwait(false);

        // check_refblocks: every refcount block must be referenced exactly once (by the table).
        for (var i = 0; i < _refcountTable.Length; i++)
        {
            var block = _refcountTable[i] >> _header.ClusterBits;
            if (_refcountTable[i] != 0 && _references[block] != 1)
            {
                Corrupt($"ERROR refcount block {i} refcount={_references[block]}");
                NeedsRebuild = true;
            }
        }
    }

    /// <returns>False when the table lies where no file reaches: the check stops there (<see cref="Failure"/>).</returns>
    private async ValueTask<bool> WalkL1Async(long l1Offset, int l1Size, bool active, CancellationToken cancellationToken)
    {
        if (l1Size == 0)
        {
            return true;
        }

        var what = active ? "L1 table" : "snapshot L1 table";
        var length = l1Size * 8L;
        if (l1Offset < 0 || length > MaxRequestEnd - l1Offset)
        {
            // Only a snapshot's L1 offset can get here (the header's is checked at parse). QEMU
            // fails the check on such a table: with its top bit set the offset is negative to
            // QEMU's signed end-of-file test, which it passes, and counting it would need an
            // array reaching 2^63 ("Check failed: Cannot allocate memory"); otherwise reading it
            // is a request past the block layer's limit ("Input/output error"). The check stops
            // here too, with EFBIG's words: the table lies past the largest file there can be.
            AddCheckError($"ERROR {what} at offset 0x{(ulong)l1Offset:x} (+{length}) is past the largest possible file");
            Failure = "File too large";
            return false;
        }

        // A table past the end of the file is counted as an error, then read as QEMU reads it:
        // the bytes past the end read as zeroes.
        Reference(l1Offset, length, what);
        var l1 = new byte[length];
        await _file.ReadAsync(l1Offset, l1, cancellationToken).ConfigureAwait(false);
        var l2 = new byte[ClusterSize];
        for (var i = 0; i < l1Size; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(l1.AsSpan(i * 8));
            var offset = (long)(entry & Qcow2Layout.L1OffsetMask);
            if ((entry & Qcow2Layout.L1ReservedMask) != 0)
            {
                Corrupt($"ERROR: L1 entry {i} has reserved bits set (0x{entry:x16})");
                continue;
            }

            if (offset == 0)
            {
                continue;
            }

            if ((offset & (ClusterSize - 1)) != 0 || !Reference(offset, ClusterSize, $"L2 table of L1 entry {i}"))
            {
                continue;
            }

            await _file.ReadAsync(offset, l2, cancellationToken).ConfigureAwait(false);
            WalkL2(l2, active);
        }

        return true;
    }

    private void WalkL2(byte[] l2, bool active)
    {
        // QEMU's next_contiguous_offset is local to check_refcounts_l2: fragmentation is counted
        // within one L2 table.
        _lastDataCluster = -1;
        var stride = _header.HasExtendedL2 ? 16 : 8;
        for (var i = 0; i < l2.Length / stride; i++)
        {
            var raw = BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan(i * stride));
            var bitmap = _header.HasExtendedL2 ? BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan((i * stride) + 8)) : 0;
            var entry = new L2Entry(raw, bitmap, _header.ClusterBits, _header.HasExtendedL2);
            // QEMU checks the reserved bits of every standard descriptor, allocated or not
            // (check_refcounts_l2), and still counts the cluster its offset names.
            if (!entry.IsCompressed && (raw & Qcow2Layout.L2StandardReservedMask) != 0)
            {
                Corrupt($"ERROR found l2 entry with reserved bits set: {raw:x}");
            }

            switch (entry.Kind)
            {
                case ClusterKind.Compressed:
                    if (entry.IsCopied)
                    {
                        Corrupt($"ERROR: coffset=0x{entry.CompressedOffset:x}: copied flag must never be set for compressed clusters");
                    }

                    if (Reference(entry.CompressedOffset, entry.CompressedLength, "compressed cluster") && active)
                    {
                        // qemu-img counts every compressed cluster as fragmented too.
                        _allocated++;
                        _compressed++;
                        _fragmented++;
                    }

                    break;
                case ClusterKind.Normal or ClusterKind.ZeroAllocated:
                    if ((entry.HostOffset & (ClusterSize - 1)) != 0)
                    {
                        Corrupt($"ERROR offset={entry.HostOffset:x}: Cluster is not properly aligned; L2 entry corrupted.");
                        break;
                    }

                    if (!Reference(entry.HostOffset, ClusterSize, "data cluster"))
                    {
                        break;
                    }

                    if (active)
                    {
                        _allocated++;
                        var cluster = entry.HostOffset >> _header.ClusterBits;
                        if (_lastDataCluster >= 0 && cluster != _lastDataCluster + 1)
                        {
                            _fragmented++;
                        }

                        _lastDataCluster = cluster;
                    }

                    break;
            }
        }
    }

    /// <summary>
    /// Each snapshot's L1 and L2 tables and data, then the table itself (QEMU's
    /// calculate_refcounts): an unaligned or oversized L1 is a corruption, in QEMU's words, and
    /// is not walked.
    /// </summary>
    /// <returns>False when the check stops (<see cref="Failure"/>).</returns>
    private async ValueTask<bool> WalkSnapshotsAsync(CancellationToken cancellationToken)
    {
        var snapshots = _snapshots!;
        foreach (var snapshot in snapshots.Entries)
        {
            if ((snapshot.L1TableOffset & (ClusterSize - 1)) != 0)
            {
                Corrupt($"ERROR snapshot {snapshot.Id} ({snapshot.Name}) l1_offset=0x{(ulong)snapshot.L1TableOffset:x}: L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }

            if (snapshot.L1Size > Qcow2Layout.MaxL1Bytes / 8)
            {
                Corrupt($"ERROR snapshot {snapshot.Id} ({snapshot.Name}) l1_size=0x{snapshot.L1Size:x}: L1 table is too large; snapshot table entry corrupted");
                continue;
            }

            if (!await WalkL1Async(snapshot.L1TableOffset, (int)snapshot.L1Size, active: false, cancellationToken).ConfigureAwait(false))
            {
                return false;
            }
        }

        Reference(_header.SnapshotsOffset, snapshots.Length, "snapshot table");
        return true;
    }

    private async ValueTask WalkBitmapsAsync(CancellationToken cancellationToken)
    {
        // Formats.md §2.1–§2.3; a stale extension (autoclear bit 0 clear) is not counted: its clusters are leaks.
        var extension = _header.FindExtension(Qcow2Layout.ExtensionBitmaps);
        if (extension is null || (_header.AutoclearFeatures & Qcow2Layout.AutoclearBitmaps) == 0)
        {
            return;
        }

        var ext = extension.Value.Span;
        var count = BinaryPrimitives.ReadUInt32BigEndian(ext);
        var dirSize = (long)BinaryPrimitives.ReadUInt64BigEndian(ext[8..]);
        var dirOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(ext[16..]);
        if (dirSize < 0 || dirSize > 1024L * 65535 || count > 65535 || dirOffset < 0)
        {
            Corrupt("ERROR bitmap directory is too large");
            return;
        }

        if (!Reference(dirOffset, dirSize, "bitmap directory"))
        {
            return;
        }

        var directory = new byte[dirSize];
        await _file.ReadAsync(dirOffset, directory, cancellationToken).ConfigureAwait(false);
        var at = 0L;
        for (var b = 0; b < count && at + 24 <= directory.Length; b++)
        {
            var entry = directory.AsSpan((int)at);
            var tableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(entry);
            var tableSize = BinaryPrimitives.ReadUInt32BigEndian(entry[8..]);
            var nameSize = BinaryPrimitives.ReadUInt16BigEndian(entry[18..]);
            var extra = BinaryPrimitives.ReadUInt32BigEndian(entry[20..]);
            at += (24L + extra + nameSize + 7) & ~7L;
            if (tableSize > 0x8000000 || !Reference(tableOffset, tableSize * 8L, "bitmap table"))
            {
                continue;
            }

            var table = new byte[tableSize * 8L];
            await _file.ReadAsync(tableOffset, table, cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < tableSize; i++)
            {
                var data = (long)(BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8)) & Qcow2Layout.L2OffsetMask);
                if (data != 0)
                {
                    Reference(data, ClusterSize, "bitmap data cluster");
                }
            }
        }
    }

    private bool Reference(long offset, long length, string what)
    {
        if (length <= 0)
        {
            return true;
        }

        if (offset < 0 || offset > long.MaxValue - length)
        {
            Corrupt($"ERROR {what} at offset 0x{offset:x} (+{length}) is outside the image file");
            return false;
        }

        var first = offset >> _header.ClusterBits;
        var last = (offset + length - 1) >> _header.ClusterBits;
        if (last >= FileClusters)
        {
            Corrupt($"ERROR {what} at offset 0x{offset:x} (+{length}) is outside the image file");
            return false;
        }

        for (var c = first; c <= last; c++)
        {
            _references[c] = _references[c] == uint.MaxValue ? uint.MaxValue : _references[c] + 1;
        }

        return true;
    }
}
