using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// One pass of <c>qemu-img check</c> over a qcow2 file (QEMU <c>qcow2_check_refcounts</c>):
/// counts every reference to every host cluster from the metadata (header, refcount table and
/// blocks, active and snapshot L1/L2 tables, data, compressed byte ranges, snapshot table,
/// bitmap directory and tables; <c>RefcountAudit.Count.cs</c>), then compares the counts with the stored refcounts and checks
/// the COPIED flags, optionally repairing what it finds (formats.md §1.7).
/// </summary>
/// <remarks>
/// Repairs write only refcount entries and COPIED flags in place, and flush after each pass:
/// raising a refcount or clearing a COPIED flag is always safe, and lowering a refcount to the
/// references found only turns a leak into free space, so a crash mid-repair leaves leaks at worst.
/// </remarks>
internal sealed partial class RefcountAudit
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
    private SnapshotTable? _snapshots;

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

    /// <summary>
    /// Why counting stopped before the end, in strerror's words (qemu-img: "Check failed: %s"),
    /// or null. A check that failed has no verdict on the refcounts, and a repair writes nothing.
    /// </summary>
    public string? Failure { get; private set; }

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
            Failure = Failure,
            Messages = _messages,
        };
    }
}
