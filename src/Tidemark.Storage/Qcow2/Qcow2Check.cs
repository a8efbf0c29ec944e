using System.Buffers.Binary;
using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Storage.Qcow2;

/// <summary>What a consistency check found (the fields of <c>qemu-img check --output=json</c>).</summary>
public sealed record Qcow2CheckResult
{
    public required string Path { get; init; }

    /// <summary>Refcounts lower than the references found, bad flags, references outside the file.</summary>
    public required long Corruptions { get; init; }

    /// <summary>Clusters counted but not referenced.</summary>
    public required long Leaks { get; init; }

    public long CheckErrors { get; init; }

    public required long TotalClusters { get; init; }

    public required long AllocatedClusters { get; init; }

    public required long FragmentedClusters { get; init; }

    public required long CompressedClusters { get; init; }

    public required long ImageEndOffset { get; init; }

    /// <summary>One line per problem, worded as qemu-img words them.</summary>
    public required IReadOnlyList<string> Messages { get; init; }

    /// <summary>
    /// qemu-img check's exit status: 1 when some refcounts could not be read (the check did not
    /// complete: "Check failed"), else 0 clean, 2 corrupted, 3 leaks only.
    /// </summary>
    public int ExitCode => CheckErrors > 0 ? 1 : Corruptions > 0 ? 2 : Leaks > 0 ? 3 : 0;
}

/// <summary>
/// Recomputes every host cluster's references from the metadata and compares them with the
/// stored refcounts, as <c>qemu-img check</c> does (formats.md §1.7; QEMU
/// <c>qcow2_check_refcounts</c>): header, refcount table and blocks, active L1/L2 and data,
/// compressed byte ranges, snapshot table and snapshot L1/L2 tables, bitmap directory, tables
/// and data. COPIED flags are checked against the stored refcounts.
/// </summary>
public static class Qcow2Check
{
    /// <summary>The largest host file checked: one counter per cluster (2^28 counters = 1 GiB).</summary>
    private const long MaxCheckedClusters = 1L << 28;

    /// <exception cref="StorageException">The header itself is unreadable (then nothing can be checked).</exception>
    public static async ValueTask<Qcow2CheckResult> RunAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = HostFile.Open(path, readOnly: true);
        await using (file.ConfigureAwait(false))
        {
            var probe = new byte[Qcow2Header.ProbeLength];
            await file.ReadAsync(0, probe, cancellationToken).ConfigureAwait(false);
            var bits = Qcow2Header.ReadClusterBits(probe.AsSpan(0, (int)Math.Min(probe.Length, file.Length)), file.Path);
            var cluster0 = new byte[1 << bits];
            await file.ReadAsync(0, cluster0, cancellationToken).ConfigureAwait(false);
            var header = Qcow2Header.Parse(cluster0, file.Length, file.Path);
            await CheckBitmapDirectoryAsync(file, header, cancellationToken).ConfigureAwait(false);
            await CheckBackingChainAsync(file, header, cancellationToken).ConfigureAwait(false);
            var walk = new Walk(file, header);
            if (walk.FileClusters > MaxCheckedClusters)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"{file.Path}: the file has {walk.FileClusters} clusters, more than the {MaxCheckedClusters} a check counts");
            }

            await walk.RunAsync(cancellationToken).ConfigureAwait(false);
            return walk.Result() with { Path = path };
        }
    }

    /// <summary>
    /// qemu-img check opens the image with its backing chain: a backing file that is missing,
    /// loops or cannot be opened fails the check ("Could not open backing file") before any
    /// counting, so an image that no reader can use is never called clean.
    /// </summary>
    private static async ValueTask CheckBackingChainAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        if (header.BackingFile is null)
        {
            return;
        }

        var backing = await DiskImage.OpenBackingAsync(file.Path, header.BackingFile, header.BackingFormat, [file.Path], cancellationToken).ConfigureAwait(false);
        await backing.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// qemu-img check opens the image first, and opening loads the bitmap directory: a directory
    /// QEMU refuses ("Bitmap 'bc' doesn't satisfy the constraints", "Broken bitmap directory")
    /// fails the check before any counting, exactly as the same image fails to open here.
    /// </summary>
    private static async ValueTask CheckBitmapDirectoryAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        // Without the autoclear bit the extension is stale and ignored (formats.md §2.1).
        if ((header.AutoclearFeatures & Qcow2Layout.AutoclearBitmaps) == 0 || header.FindExtension(Qcow2Layout.ExtensionBitmaps) is not { } payload)
        {
            return;
        }

        var extension = BitmapsExtension.Read(payload.Span, header.ClusterSize);
        var bytes = new byte[extension.DirectorySize];
        await file.ReadAsync(extension.DirectoryOffset, bytes, cancellationToken).ConfigureAwait(false);
        var virtualSize = DiskSize.FromQcow2Header(header.Size);
        try
        {
            // Then each consistent bitmap's table, as opening loads it (QEMU bitmap_table_load
            // with check_table_entry: "Could not read bitmap_table table from image").
            foreach (var entry in BitmapDirectory.Parse(bytes, extension, header.ClusterSize, virtualSize))
            {
                if (entry.Flags.HasFlag(BitmapEntryFlags.InUse))
                {
                    continue;
                }

                var expected = BitmapTable.ExpectedSize(virtualSize, entry.GranularityBits, header.ClusterSize);
                if (entry.TableSize != expected)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"bitmap '{entry.Name}' (table at offset 0x{entry.TableOffset:x}): bitmap_table_size is {entry.TableSize}, the disk needs exactly {expected}");
                }

                var table = new byte[(long)entry.TableSize * BitmapTable.EntrySize];
                await file.ReadAsync(entry.TableOffset, table, cancellationToken).ConfigureAwait(false);
                _ = BitmapTable.Decode(table, entry.TableOffset, header.ClusterSize, entry.Name);
            }
        }
        catch (StorageException e)
        {
            throw new StorageException(e.Reason, $"{file.Path}: {e.Message}", e);
        }
    }

    private sealed class Walk
    {
        private readonly HostFile _file;
        private readonly Qcow2Header _header;
        private readonly uint[] _references;
        private readonly List<string> _messages = [];
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

        public Walk(HostFile file, Qcow2Header header)
        {
            _file = file;
            _header = header;
            FileClusters = (file.Length + header.ClusterSize - 1) >> header.ClusterBits;
            _references = new uint[Math.Min(FileClusters, MaxCheckedClusters)];
        }

        public long FileClusters { get; }

        private int ClusterSize => _header.ClusterSize;

        public async ValueTask RunAsync(CancellationToken cancellationToken)
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
                    continue;
                }

                _refcountTable[i] = (long)offset;
                Reference((long)offset, ClusterSize, $"refcount block {i}");
            }

            await WalkL1Async(_header.L1TableOffset, _header.L1Size, active: true, cancellationToken).ConfigureAwait(false);
            await WalkSnapshotsAsync(cancellationToken).ConfigureAwait(false);
            await WalkBitmapsAsync(cancellationToken).ConfigureAwait(false);
            await CompareAsync(cancellationToken).ConfigureAwait(false);
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

                if (active && ((entry & Qcow2Layout.OflagCopied) != 0) != (await StoredRefcountAsync(offset >> _header.ClusterBits, cancellationToken).ConfigureAwait(false) == 1))
                {
                    Corrupt($"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={entry:x} refcount={await StoredRefcountAsync(offset >> _header.ClusterBits, cancellationToken).ConfigureAwait(false)}");
                }

                await _file.ReadAsync(offset, l2, cancellationToken).ConfigureAwait(false);
                await WalkL2Async(l2, active, cancellationToken).ConfigureAwait(false);
            }
        }

        private async ValueTask WalkL2Async(byte[] l2, bool active, CancellationToken cancellationToken)
        {
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
                            var refcount = await StoredRefcountAsync(entry.HostOffset >> _header.ClusterBits, cancellationToken).ConfigureAwait(false);
                            if (entry.IsCopied != (refcount == 1))
                            {
                                Corrupt($"ERROR OFLAG_COPIED data cluster: l2_entry={raw:x} refcount={refcount}");
                            }

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

        private async ValueTask CompareAsync(CancellationToken cancellationToken)
        {
            var perBlockBits = _header.ClusterBits + 3 - _header.RefcountOrder;
            for (long c = 0; c < _references.Length; c++)
            {
                if (_unreadableBlocks.Contains(c >> perBlockBits))
                {
                    // QEMU cannot read this refcount either (qcow2_get_refcount fails with EIO),
                    // which makes the check incomplete: an internal error, not a verdict.
                    _checkErrors++;
                    _messages.Add($"Can't get refcount for cluster {c}: Input/output error");
                    continue;
                }

                var stored = await StoredRefcountAsync(c, cancellationToken).ConfigureAwait(false);
                var counted = _references[c];
                if (stored != 0 || counted != 0)
                {
                    _highestUsed = c;
                }

                if (stored < counted)
                {
                    Corrupt($"ERROR cluster {c} refcount={stored} reference={counted}");
                }
                else if (stored > counted)
                {
                    _leaks++;
                    _messages.Add($"Leaked cluster {c} refcount={stored} reference={counted}");
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
                Messages = _messages,
            };
        }
    }
}
