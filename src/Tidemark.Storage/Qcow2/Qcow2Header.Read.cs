using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Tidemark.Storage.Qcow2;

internal sealed partial record Qcow2Header
{
    /// <summary>Bytes to read first: enough for any known header field, before the cluster size is known.</summary>
    public const int ProbeLength = 512;

    /// <summary>Reads the cluster size from the first bytes, checking magic, version and cluster_bits only.</summary>
    public static int ReadClusterBits(ReadOnlySpan<byte> probe, string path)
    {
        if (probe.Length < Qcow2Layout.V2HeaderLength)
        {
            throw Invalid(StorageErrorReason.NotAnImage, path, 0, $"file is too short for a qcow2 header ({probe.Length} bytes)");
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(probe);
        if (magic != Qcow2Layout.Magic)
        {
            throw Invalid(StorageErrorReason.NotAnImage, path, Qcow2Layout.MagicOffset, $"magic 0x{magic:x8} is not qcow2 (0x{Qcow2Layout.Magic:x8})");
        }

        var version = BinaryPrimitives.ReadUInt32BigEndian(probe[Qcow2Layout.VersionOffset..]);
        if (version is not (2 or 3))
        {
            throw Invalid(StorageErrorReason.UnsupportedFeature, path, Qcow2Layout.VersionOffset, $"version {version} is not supported (only 2 and 3)");
        }

        var clusterBits = BinaryPrimitives.ReadUInt32BigEndian(probe[Qcow2Layout.ClusterBitsOffset..]);
        if (clusterBits is < Qcow2Layout.MinClusterBits or > Qcow2Layout.MaxClusterBits)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.ClusterBitsOffset, $"cluster_bits {clusterBits} is outside {Qcow2Layout.MinClusterBits}..{Qcow2Layout.MaxClusterBits} (512 B to 2 MiB)");
        }

        return (int)clusterBits;
    }

    /// <summary>
    /// Parses and checks cluster 0. <paramref name="cluster0"/> holds the first cluster of the
    /// file (zero-filled past EOF); <paramref name="fileLength"/> bounds the table offsets.
    /// </summary>
    /// <exception cref="StorageException">A field or extension breaks the format; the message names it and its offset.</exception>
    public static Qcow2Header Parse(ReadOnlySpan<byte> cluster0, long fileLength, string path)
    {
        var clusterBits = ReadClusterBits(cluster0, path);
        var clusterSize = 1 << clusterBits;
        if (cluster0.Length < clusterSize)
        {
            throw new ArgumentException("cluster 0 must be passed whole", nameof(cluster0));
        }

        cluster0 = cluster0[..clusterSize];
        var version = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.VersionOffset..]);
        var backingOffset = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.BackingFileOffsetOffset..]);
        var backingSize = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.BackingFileSizeOffset..]);
        var size = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.SizeOffset..]);
        var cryptMethod = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.CryptMethodOffset..]);
        var l1Size = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.L1SizeOffset..]);
        var l1Offset = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.L1TableOffsetOffset..]);
        var refcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.RefcountTableOffsetOffset..]);
        var refcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.RefcountTableClustersOffset..]);
        var snapshotCount = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.SnapshotCountOffset..]);
        var snapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.SnapshotsOffsetOffset..]);

        ulong incompatible = 0, compatible = 0, autoclear = 0;
        uint refcountOrder = Qcow2Layout.DefaultRefcountOrder;
        uint headerLength = Qcow2Layout.V2HeaderLength;
        byte compressionType = 0;
        var unknownFields = ReadOnlyMemory<byte>.Empty;
        if (version == 3)
        {
            incompatible = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.IncompatibleFeaturesOffset..]);
            compatible = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.CompatibleFeaturesOffset..]);
            autoclear = BinaryPrimitives.ReadUInt64BigEndian(cluster0[Qcow2Layout.AutoclearFeaturesOffset..]);
            refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.RefcountOrderOffset..]);
            headerLength = BinaryPrimitives.ReadUInt32BigEndian(cluster0[Qcow2Layout.HeaderLengthOffset..]);
            if (headerLength < Qcow2Layout.V3MinHeaderLength)
            {
                throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.HeaderLengthOffset, $"header_length {headerLength} is shorter than the v3 minimum of {Qcow2Layout.V3MinHeaderLength}");
            }

            if (headerLength > clusterSize)
            {
                throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.HeaderLengthOffset, $"header_length {headerLength} exceeds the cluster size {clusterSize}");
            }

            if (headerLength > Qcow2Layout.CompressionTypeOffset)
            {
                compressionType = cluster0[Qcow2Layout.CompressionTypeOffset];
            }

            if (headerLength > Qcow2Layout.V3HeaderLength)
            {
                unknownFields = cluster0[Qcow2Layout.V3HeaderLength..(int)headerLength].ToArray();
            }
        }

        if (cryptMethod != 0)
        {
            throw Invalid(StorageErrorReason.UnsupportedFeature, path, Qcow2Layout.CryptMethodOffset, $"encryption (crypt_method {cryptMethod}) is not supported");
        }

        if (size > Qcow2Layout.MaxVirtualSize)
        {
            throw Invalid(StorageErrorReason.LimitExceeded, path, Qcow2Layout.SizeOffset, $"size {size} exceeds the limit of {Qcow2Layout.MaxVirtualSize} bytes");
        }

        if (refcountOrder > Qcow2Layout.MaxRefcountOrder)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.RefcountOrderOffset, $"refcount_order {refcountOrder} is above {Qcow2Layout.MaxRefcountOrder} (64-bit refcounts)");
        }

        // Incompatible features: anything unknown is refused by name (feature name table, §1.3).
        var extensionEnd = backingOffset != 0 ? backingOffset : (ulong)clusterSize;
        if (backingOffset != 0 && (backingOffset > (ulong)clusterSize || backingSize > Qcow2Layout.MaxBackingFileNameLength || backingOffset + backingSize > (ulong)clusterSize))
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.BackingFileOffsetOffset, $"backing file name ({backingSize} bytes at {backingOffset}) must be at most {Qcow2Layout.MaxBackingFileNameLength} bytes and lie inside cluster 0");
        }

        var extensions = ParseExtensions(cluster0[(int)headerLength..(int)Math.Max(extensionEnd, headerLength)], (int)headerLength, version, path, out var backingFormat);
        var unknownIncompatible = incompatible & ~Qcow2Layout.IncompatKnownMask;
        if (unknownIncompatible != 0)
        {
            var table = extensions.FirstOrDefault(e => e.Type == Qcow2Layout.ExtensionFeatureTable)?.Data ?? ReadOnlyMemory<byte>.Empty;
            var names = new List<string>();
            for (var bit = 0; bit < 64; bit++)
            {
                if ((unknownIncompatible & (1UL << bit)) != 0)
                {
                    var name = Qcow2FeatureTable.Find(table.Span, Qcow2FeatureKind.Incompatible, bit);
                    names.Add(name is null ? $"unknown incompatible feature bit {bit}" : $"'{name}' (incompatible bit {bit})");
                }
            }

            throw Invalid(StorageErrorReason.UnsupportedFeature, path, Qcow2Layout.IncompatibleFeaturesOffset, $"unsupported feature: {string.Join(", ", names)}");
        }

        if ((incompatible & Qcow2Layout.IncompatDataFile) != 0)
        {
            throw Invalid(StorageErrorReason.UnsupportedFeature, path, Qcow2Layout.IncompatibleFeaturesOffset, "unsupported feature: 'external data file' (incompatible bit 2)");
        }

        var compressionBit = (incompatible & Qcow2Layout.IncompatCompression) != 0;
        if (compressionType > Qcow2Layout.CompressionZstd)
        {
            throw Invalid(StorageErrorReason.UnsupportedFeature, path, Qcow2Layout.CompressionTypeOffset, $"compression_type {compressionType} is unknown (0 deflate, 1 zstd)");
        }

        if (compressionBit != (compressionType != 0))
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.CompressionTypeOffset, $"compression_type {compressionType} does not match incompatible bit 3 ({(compressionBit ? "set" : "clear")})");
        }

        if ((incompatible & Qcow2Layout.IncompatExtendedL2) != 0 && clusterBits < Qcow2Layout.MinExtendedL2ClusterBits)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.IncompatibleFeaturesOffset, $"extended L2 entries need cluster_bits >= {Qcow2Layout.MinExtendedL2ClusterBits} (have {clusterBits})");
        }

        // Tables: alignment, caps before anything is allocated, and the L1 must map the whole disk.
        var l2Entries = clusterSize / ((incompatible & Qcow2Layout.IncompatExtendedL2) != 0 ? 16 : 8);
        if ((ulong)l1Size * 8 > Qcow2Layout.MaxL1Bytes)
        {
            throw Invalid(StorageErrorReason.LimitExceeded, path, Qcow2Layout.L1SizeOffset, $"l1_size {l1Size} exceeds QEMU's 32 MiB L1 table limit");
        }

        var needL1 = RequiredL1Entries((long)size, clusterBits, l2Entries);
        if (l1Size < needL1)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.L1SizeOffset, $"l1_size {l1Size} is too small for size {size} (needs {needL1})");
        }

        CheckTableOffset(l1Offset, (ulong)l1Size * 8, clusterSize, fileLength, path, Qcow2Layout.L1TableOffsetOffset, "l1_table_offset", allowZero: l1Size == 0);
        if (refcountTableClusters == 0)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.RefcountTableClustersOffset, "refcount_table_clusters is 0");
        }

        if ((ulong)refcountTableClusters * (ulong)clusterSize > Qcow2Layout.MaxRefcountTableBytes)
        {
            throw Invalid(StorageErrorReason.LimitExceeded, path, Qcow2Layout.RefcountTableClustersOffset, $"refcount_table_clusters {refcountTableClusters} exceeds QEMU's 8 MiB refcount table limit");
        }

        CheckTableOffset(refcountTableOffset, (ulong)refcountTableClusters * (ulong)clusterSize, clusterSize, fileLength, path, Qcow2Layout.RefcountTableOffsetOffset, "refcount_table_offset", allowZero: false);
        if (snapshotCount > Qcow2Layout.MaxSnapshots)
        {
            throw Invalid(StorageErrorReason.LimitExceeded, path, Qcow2Layout.SnapshotCountOffset, $"nb_snapshots {snapshotCount} exceeds QEMU's limit of {Qcow2Layout.MaxSnapshots}");
        }

        if (snapshotCount > 0)
        {
            CheckTableOffset(snapshotsOffset, 1, clusterSize, fileLength, path, Qcow2Layout.SnapshotsOffsetOffset, "snapshots_offset", allowZero: false);
        }
        else if (snapshotsOffset % (ulong)clusterSize != 0 || snapshotsOffset > long.MaxValue)
        {
            // QEMU validates the offset even for an empty table (qcow2_validate_table).
            throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.SnapshotsOffsetOffset, $"Snapshot table offset invalid: snapshots_offset 0x{snapshotsOffset:x} is not a multiple of the cluster size {clusterSize}");
        }

        string? backingFile = null;
        if (backingOffset != 0)
        {
            if (backingSize == 0)
            {
                throw Invalid(StorageErrorReason.InvalidHeader, path, Qcow2Layout.BackingFileSizeOffset, "backing_file_size is 0 while backing_file_offset is set");
            }

            // An empty name (NUL first) means no backing file, as for QEMU.
            backingFile = CString(cluster0.Slice((int)backingOffset, (int)backingSize));
            backingFile = backingFile.Length == 0 ? null : backingFile;
        }

        return new Qcow2Header
        {
            Version = version,
            ClusterBits = clusterBits,
            Size = (long)size,
            L1Size = (int)l1Size,
            L1TableOffset = (long)l1Offset,
            RefcountTableOffset = (long)refcountTableOffset,
            RefcountTableClusters = (int)refcountTableClusters,
            SnapshotCount = (int)snapshotCount,
            SnapshotsOffset = (long)snapshotsOffset,
            IncompatibleFeatures = incompatible,
            CompatibleFeatures = compatible,
            AutoclearFeatures = autoclear,
            RefcountOrder = (int)refcountOrder,
            HeaderLength = (int)headerLength,
            CompressionType = compressionType,
            UnknownFields = unknownFields,
            Extensions = extensions,
            BackingFile = backingFile,
            BackingFormat = backingFormat,
        };
    }

    private static List<Qcow2HeaderExtension> ParseExtensions(ReadOnlySpan<byte> area, int areaOffset, int version, string path, out string? backingFormat)
    {
        backingFormat = null;
        var list = new List<Qcow2HeaderExtension>();
        var seen = new HashSet<uint>();
        var at = 0;
        while (at + Qcow2HeaderExtension.PrefixLength <= area.Length)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(area[at..]);
            var length = BinaryPrimitives.ReadUInt32BigEndian(area[(at + 4)..]);
            var fileOffset = areaOffset + at;
            if (type == Qcow2Layout.ExtensionEnd)
            {
                return list;
            }

            var dataStart = at + Qcow2HeaderExtension.PrefixLength;
            if (length > (uint)(area.Length - dataStart))
            {
                throw Invalid(StorageErrorReason.InvalidHeader, path, fileOffset, $"Header extension too large: header extension 0x{type:x8} claims {length} bytes, past the end of the extension area");
            }

            if (!seen.Add(type))
            {
                throw Invalid(StorageErrorReason.InvalidHeader, path, fileOffset, $"header extension 0x{type:x8} appears twice");
            }

            var data = area.Slice(dataStart, (int)length);
            switch (type)
            {
                case Qcow2Layout.ExtensionBackingFormat:
                    backingFormat = CString(data);
                    break;
                case Qcow2Layout.ExtensionBitmaps when length != Qcow2Layout.BitmapsExtensionLength:
                    throw Invalid(StorageErrorReason.InvalidHeader, path, fileOffset, $"bitmaps header extension has length {length}, expected {Qcow2Layout.BitmapsExtensionLength}");
                case Qcow2Layout.ExtensionBitmaps when version < 3:
                    throw Invalid(StorageErrorReason.InvalidHeader, path, fileOffset, "bitmaps header extension in a version 2 image");
                case Qcow2Layout.ExtensionCrypto:
                    throw Invalid(StorageErrorReason.UnsupportedFeature, path, fileOffset, "full disk encryption header extension is not supported");
                default:
                    list.Add(new Qcow2HeaderExtension(type, data.ToArray()));
                    break;
            }

            // Padding to 8; a length near the area's end leaves no room for padding, which ends the list.
            at = dataStart + (int)(((long)length + 7) & ~7L);
        }

        return list;
    }

    private static void CheckTableOffset(ulong offset, ulong length, int clusterSize, long fileLength, string path, int field, string name, bool allowZero)
    {
        if (offset == 0 && allowZero)
        {
            return;
        }

        if (offset == 0 || (offset & (ulong)(clusterSize - 1)) != 0)
        {
            throw Invalid(StorageErrorReason.InvalidHeader, path, field, $"{name} 0x{offset:x} is not a non-zero multiple of the cluster size {clusterSize}");
        }

        // An empty table (l1_size 0 of a zero-sized disk) may sit exactly at the end of the file.
        if (length == 0)
        {
            return;
        }

        // A table may end inside the last cluster (QEMU leaves files at l1_offset + 8*l1_size), not past it.
        var clusterEnd = ((ulong)fileLength + (ulong)clusterSize - 1) & ~(ulong)(clusterSize - 1);
        if (offset >= clusterEnd || length > clusterEnd - offset)
        {
            throw Invalid(StorageErrorReason.Corrupt, path, field, $"{name} 0x{offset:x} (+{length} bytes) points past the end of the file ({fileLength} bytes)");
        }
    }

    /// <summary>
    /// QEMU keeps the backing file name and format as C strings, so a NUL byte ends them: an
    /// image naming "ba\0e.raw" has the backing file "ba" for qemu-img, and for us.
    /// </summary>
    private static string CString(ReadOnlySpan<byte> bytes)
    {
        var nul = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? bytes : bytes[..nul]);
    }

    private static StorageException Invalid(StorageErrorReason reason, string path, long offset, string message)
        => new(reason, string.Create(CultureInfo.InvariantCulture, $"{path}: qcow2 header at offset {offset}: {message}"));
}
