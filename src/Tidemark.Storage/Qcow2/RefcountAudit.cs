using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// One pass of <c>qemu-img check</c> over a qcow2 file (QEMU <c>qcow2_check_refcounts</c>):
/// counts every reference to every host cluster from the metadata (header, refcount table and
/// blocks, active and snapshot L1/L2 tables, data, compressed byte ranges, snapshot table,
/// bitmap directory and tables), then compares the counts with the stored refcounts and checks
/// the COPIED flags, optionally repairing what it finds (formats.md §1.7).
/// </summary>
/// <remarks>
/// Repairs write only refcount entries and COPIED flags in place, and flush after each pass:
/// raising a refcount or clearing a COPIED flag is always safe, and lowering a refcount to the
/// references found only turns a leak into free space, so a crash mid-repair leaves leaks at worst.
/// </remarks>
internal sealed class RefcountAudit
{
    /// <summary>The largest host file checked: one counter per cluster (2^28 counters = 1 GiB).</summary>
    public const long MaxCheckedClusters = 1L << 28;

    private readonly HostFile _file;
    private readonly Qcow2Header _header;
    private readonly uint[] _references;
    private readonly List<string> _messages;
    private long[] _refcountTable = [];
    private readonly Dictionary<long, RefcountBlock> _blocks = [];

    // Refcount table entries that point nowhere readable: the refcounts they cover are unknown.
    private readonly HashSet<long> _unreadableBlocks = [];
    private long _corruptions;
    private long _checkErrors;
    private long _leaks;
    private long _allocated;
    private long _fragmented;
    private long _compressed;
    private long _lastDataCluster = -1;
    private long _highestUsed = -1;

    private RefcountAudit(HostFile file, Qcow2Header header, List<string> messages)
    {
        _messages = messages;
        _file = file;
        _header = header;
        FileClusters = (file.Length + header.ClusterSize - 1) >> header.ClusterBits;
        _references = new uint[Math.Min(FileClusters, MaxCheckedClusters)];
    }

    public long FileClusters { get; }

    /// <summary>
    /// The refcount structure itself is broken (a stored refcount of 0 for a used cluster, a bad
    /// table entry, a block not counted exactly once): only rebuilding it repairs the image
    /// (QEMU's <c>rebuild</c> flag).
    /// </summary>
    public bool NeedsRebuild { get; private set; }

    /// <summary>The references counted per host cluster (the in-memory refcount table of QEMU's check).</summary>
    public ReadOnlySpan<uint> References => _references;

    public long Corruptions => _corruptions;

    public long Leaks => _leaks;

    public long CheckErrors => _checkErrors;

    public long LeaksFixed { get; set; }

    public long CorruptionsFixed { get; set; }

    /// <summary>Messages so far, in qemu-img's words and order.</summary>
    public IReadOnlyList<string> Messages => _messages;

    /// <param name="messages">Where messages go; a repair shares one list between its passes.</param>
    /// <exception cref="StorageException">The file has more clusters than a check counts.</exception>
    public static RefcountAudit Create(HostFile file, Qcow2Header header, List<string>? messages = null)
    {
        var clusters = (file.Length + header.ClusterSize - 1) >> header.ClusterBits;
        if (clusters > MaxCheckedClusters)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"{file.Path}: the file has {clusters} clusters, more than the {MaxCheckedClusters} a check counts");
        }

        return new RefcountAudit(file, header, messages ?? []);
    }

    public void AddMessage(string message) => _messages.Add(message);

    public void AddCheckError(string message)
    {
        _checkErrors++;
        _messages.Add(message);
    }

    private int ClusterSize => _header.ClusterSize;

    /// <summary>Counts every reference (QEMU's calculate_refcounts, without the COPIED checks).</summary>
    public async ValueTask CountAsync(CancellationToken cancellationToken)
    {
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

        await WalkL1Async(_header.L1TableOffset, _header.L1Size, active: true, cancellationToken).ConfigureAwait(false);
        await WalkSnapshotsAsync(cancellationToken).ConfigureAwait(false);
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

    private async ValueTask WalkL1Async(long l1Offset, int l1Size, bool active, CancellationToken cancellationToken)
    {
        if (l1Size == 0)
        {
            return;
        }

        Reference(l1Offset, l1Size * 8L, active ? "L1 table" : "snapshot L1 table");
        var l1 = new byte[l1Size * 8L];
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

    private async ValueTask WalkSnapshotsAsync(CancellationToken cancellationToken)
    {
        // Snapshot table entries (formats.md §1.6): fixed 40 bytes, extra data, id, name, padding to 8.
        var at = _header.SnapshotsOffset;
        var start = at;
        var fixedPart = new byte[40];
        for (var s = 0; s < _header.SnapshotCount; s++)
        {
            await _file.ReadAsync(at, fixedPart, cancellationToken).ConfigureAwait(false);
            var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(fixedPart);
            var l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(8));
            var idSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(12));
            var nameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
            var extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(36));
            if (extraSize > Qcow2Layout.MaxSnapshotExtraData || (ulong)l1Size * 8 > Qcow2Layout.MaxL1Bytes || (l1Offset & (ClusterSize - 1)) != 0)
            {
                Corrupt($"ERROR snapshot {s} at offset {at} is invalid");
                return;
            }

            await WalkL1Async(l1Offset, (int)l1Size, active: false, cancellationToken).ConfigureAwait(false);
            at += (40 + extraSize + idSize + nameSize + 7) & ~7L;
        }

        if (_header.SnapshotCount > 0)
        {
            Reference(start, at - start, "snapshot table");
        }
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

    /// <summary>The counts before a compare, to compare again with repairs (QEMU's pre_compare_res).</summary>
    public (long Corruptions, long Leaks, long CheckErrors) Counts
    {
        get => (_corruptions, _leaks, _checkErrors);
        set => (_corruptions, _leaks, _checkErrors) = value;
    }

    /// <summary>
    /// Compares stored refcounts with the references counted (QEMU's compare_refcounts). With
    /// <paramref name="fix"/>, a leak (stored above counted) or an error (stored below) is set
    /// to the count in place, written and flushed; a stored 0 needs a rebuild instead.
    /// </summary>
    public async ValueTask CompareAsync(Qcow2RepairMode fix, CancellationToken cancellationToken)
    {
        var perBlockBits = _header.ClusterBits + 3 - _header.RefcountOrder;
        var changed = new HashSet<RefcountBlock>();
        _highestUsed = -1;
        for (long c = 0; c < _references.Length; c++)
        {
            if (_unreadableBlocks.Contains(c >> perBlockBits))
            {
                // QEMU cannot read this refcount either (qcow2_get_refcount fails with EIO),
                // which makes the check incomplete: an internal error, not a verdict.
                AddCheckError($"Can't get refcount for cluster {c}: Input/output error");
                continue;
            }

            var stored = await StoredRefcountAsync(c, cancellationToken).ConfigureAwait(false);
            var counted = (ulong)_references[c];
            if (stored != 0 || counted != 0)
            {
                _highestUsed = c;
            }

            if (stored == counted)
            {
                continue;
            }

            var repair = false;
            if (stored == 0)
            {
                NeedsRebuild = true;
            }
            else if (stored > counted && fix.HasFlag(Qcow2RepairMode.Leaks))
            {
                repair = true;
            }
            else if (stored < counted && fix.HasFlag(Qcow2RepairMode.Errors))
            {
                repair = counted <= _blocks[c >> perBlockBits].MaxRefcount;
            }

            _messages.Add($"{(repair ? "Repairing" : stored < counted ? "ERROR" : "Leaked")} cluster {c} refcount={stored} reference={counted}");
            if (repair)
            {
                var block = _blocks[c >> perBlockBits];
                block[(int)(c & ((1L << perBlockBits) - 1))] = counted;
                changed.Add(block);
                if (stored > counted)
                {
                    LeaksFixed++;
                }
                else
                {
                    CorruptionsFixed++;
                }

                continue;
            }

            if (stored < counted)
            {
                _corruptions++;
            }
            else
            {
                _leaks++;
            }
        }

        if (changed.Count > 0)
        {
            foreach (var block in changed)
            {
                await _file.WriteAsync(block.HostOffset, block.Data, cancellationToken).ConfigureAwait(false);
                block.Dirty = false;
            }

            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Checks the COPIED flag of every active L1 and L2 entry against the stored refcount, after
    /// the refcounts were compared (and perhaps repaired), as QEMU's check_oflag_copied. With
    /// errors repaired, a wrong flag is corrected; with leaks only, only when nothing else is wrong.
    /// </summary>
    public async ValueTask CheckCopiedFlagsAsync(Qcow2RepairMode fix, CancellationToken cancellationToken)
    {
        var repair = fix.HasFlag(Qcow2RepairMode.Errors)
            || (fix.HasFlag(Qcow2RepairMode.Leaks) && _checkErrors == 0 && _corruptions == 0 && _leaks == 0);
        if (_header.L1Size == 0)
        {
            return;
        }

        var l1 = new byte[_header.L1Size * 8L];
        await _file.ReadAsync(_header.L1TableOffset, l1, cancellationToken).ConfigureAwait(false);
        var l2 = new byte[ClusterSize];
        var stride = _header.HasExtendedL2 ? 16 : 8;
        for (var i = 0; i < _header.L1Size; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(l1.AsSpan(i * 8));
            var offset = (long)(entry & Qcow2Layout.L1OffsetMask);
            if (offset == 0 || (offset & (ClusterSize - 1)) != 0 || (offset >> _header.ClusterBits) >= FileClusters)
            {
                continue;
            }

            var refcount = await StoredRefcountAsync(offset >> _header.ClusterBits, cancellationToken).ConfigureAwait(false);
            if ((refcount == 1) != ((entry & Qcow2Layout.OflagCopied) != 0))
            {
                _messages.Add($"{(repair ? "Repairing" : "ERROR")} OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={entry:x} refcount={refcount}");
                if (repair)
                {
                    var fixedEntry = refcount == 1 ? entry | Qcow2Layout.OflagCopied : entry & ~Qcow2Layout.OflagCopied;
                    BinaryPrimitives.WriteUInt64BigEndian(l1.AsSpan(i * 8), fixedEntry);
                    await _file.WriteAsync(_header.L1TableOffset + (i * 8L), l1.AsMemory(i * 8, 8), cancellationToken).ConfigureAwait(false);
                    CorruptionsFixed++;
                }
                else
                {
                    _corruptions++;
                }
            }

            await _file.ReadAsync(offset, l2, cancellationToken).ConfigureAwait(false);
            var dirty = 0;
            for (var j = 0; j < l2.Length / stride; j++)
            {
                var raw = BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan(j * stride));
                var bitmap = _header.HasExtendedL2 ? BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan((j * stride) + 8)) : 0;
                var l2Entry = new L2Entry(raw, bitmap, _header.ClusterBits, _header.HasExtendedL2);
                if (l2Entry.Kind is not (ClusterKind.Normal or ClusterKind.ZeroAllocated) || (l2Entry.HostOffset & (ClusterSize - 1)) != 0)
                {
                    continue;
                }

                var dataRefcount = await StoredRefcountAsync(l2Entry.HostOffset >> _header.ClusterBits, cancellationToken).ConfigureAwait(false);
                if ((dataRefcount == 1) == l2Entry.IsCopied)
                {
                    continue;
                }

                _messages.Add($"{(repair ? "Repairing" : "ERROR")} OFLAG_COPIED data cluster: l2_entry={raw:x} refcount={dataRefcount}");
                if (repair)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(l2.AsSpan(j * stride), dataRefcount == 1 ? raw | Qcow2Layout.OflagCopied : raw & ~Qcow2Layout.OflagCopied);
                    dirty++;
                }
                else
                {
                    _corruptions++;
                }
            }

            if (dirty > 0)
            {
                await _file.WriteAsync(offset, l2, cancellationToken).ConfigureAwait(false);
                CorruptionsFixed += dirty;
            }
        }

        if (repair)
        {
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
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

    private async ValueTask<ulong> StoredRefcountAsync(long cluster, CancellationToken cancellationToken)
    {
        var perBlockBits = _header.ClusterBits + 3 - _header.RefcountOrder;
        var index = cluster >> perBlockBits;
        if (index >= _refcountTable.Length || _refcountTable[index] == 0)
        {
            return 0;
        }

        if (!_blocks.TryGetValue(index, out var block))
        {
            var data = new byte[ClusterSize];
            await _file.ReadAsync(_refcountTable[index], data, cancellationToken).ConfigureAwait(false);
            block = new RefcountBlock(_refcountTable[index], data, _header.RefcountOrder);
            _blocks[index] = block;
        }

        return block[(int)(cluster & ((1L << perBlockBits) - 1))];
    }

    private void Corrupt(string message)
    {
        _corruptions++;
        _messages.Add(message);
    }

    public Qcow2CheckResult Result()
    {
        // qemu-img: one past the highest cluster that is counted or referenced.
        var highest = _highestUsed;
        return new Qcow2CheckResult
        {
            Path = _file.Path,
            Corruptions = _corruptions,
            Leaks = _leaks,
            CheckErrors = _checkErrors,
            TotalClusters = (_header.Size + ClusterSize - 1) >> _header.ClusterBits,
            AllocatedClusters = _allocated,
            FragmentedClusters = _fragmented,
            CompressedClusters = _compressed,
            ImageEndOffset = (highest + 1) << _header.ClusterBits,
            LeaksFixed = LeaksFixed,
            CorruptionsFixed = CorruptionsFixed,
            Messages = _messages,
        };
    }
}
