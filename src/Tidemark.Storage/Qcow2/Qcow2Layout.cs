namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Byte offsets, masks and limits of the qcow2 format (formats.md §1; QEMU <c>block/qcow2.h</c>).
/// All integers on disk are big-endian.
/// </summary>
internal static class Qcow2Layout
{
    /// <summary>"QFI\xfb".</summary>
    public const uint Magic = 0x514649FB;

    // Header fields (formats.md §1.2). Version 2 ends at V2HeaderLength; the rest exist in v3 only.
    public const int MagicOffset = 0;
    public const int VersionOffset = 4;
    public const int BackingFileOffsetOffset = 8;
    public const int BackingFileSizeOffset = 16;
    public const int ClusterBitsOffset = 20;
    public const int SizeOffset = 24;
    public const int CryptMethodOffset = 32;
    public const int L1SizeOffset = 36;
    public const int L1TableOffsetOffset = 40;
    public const int RefcountTableOffsetOffset = 48;
    public const int RefcountTableClustersOffset = 56;
    public const int SnapshotCountOffset = 60;
    public const int SnapshotsOffsetOffset = 64;
    public const int IncompatibleFeaturesOffset = 72;
    public const int CompatibleFeaturesOffset = 80;
    public const int AutoclearFeaturesOffset = 88;
    public const int RefcountOrderOffset = 96;
    public const int HeaderLengthOffset = 100;
    public const int CompressionTypeOffset = 104;

    public const int V2HeaderLength = 72;
    public const int V3MinHeaderLength = 104;

    /// <summary>What QEMU 7.2 writes: 104 + compression_type byte + 7 bytes of padding.</summary>
    public const int V3HeaderLength = 112;

    // Cluster sizes QEMU accepts: 512 B .. 2 MiB (formats.md §1.1).
    public const int MinClusterBits = 9;
    public const int MaxClusterBits = 21;
    public const int DefaultClusterBits = 16;

    /// <summary>Extended L2 needs subclusters of at least 512 bytes: 32 per cluster.</summary>
    public const int MinExtendedL2ClusterBits = 14;

    public const int MaxRefcountOrder = 6;
    public const int DefaultRefcountOrder = 4;

    /// <summary>QEMU refuses backing file names longer than this.</summary>
    public const int MaxBackingFileNameLength = 1023;

    /// <summary>QEMU's cap on the L1 table (QCOW_MAX_L1_SIZE, 32 MiB): 2^22 entries.</summary>
    public const long MaxL1Bytes = 32L << 20;

    /// <summary>QEMU's cap on the refcount table (QCOW_MAX_REFTABLE_SIZE, 8 MiB).</summary>
    public const long MaxRefcountTableBytes = 8L << 20;

    /// <summary>
    /// Largest virtual size accepted: host offsets have 56 bits (bits 9..55), and QEMU caps the
    /// block layer at 2^63 minus a margin; 2^56 keeps every guest cluster index within a long.
    /// </summary>
    public const long MaxVirtualSize = 1L << 56;

    // Incompatible feature bits (formats.md §1.2).
    public const ulong IncompatDirty = 1UL << 0;
    public const ulong IncompatCorrupt = 1UL << 1;
    public const ulong IncompatDataFile = 1UL << 2;
    public const ulong IncompatCompression = 1UL << 3;
    public const ulong IncompatExtendedL2 = 1UL << 4;

    /// <summary>The incompatible bits Tidemark can open (dirty only read-only, see open).</summary>
    public const ulong IncompatKnownMask = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2;

    public const ulong CompatLazyRefcounts = 1UL << 0;

    public const ulong AutoclearBitmaps = 1UL << 0;
    public const ulong AutoclearRawData = 1UL << 1;

    /// <summary>Autoclear bits a writer keeps; the others are cleared before the first write (§1.2, §1.7 rule 7).</summary>
    public const ulong AutoclearKnownMask = AutoclearBitmaps | AutoclearRawData;

    public const byte CompressionDeflate = 0;
    public const byte CompressionZstd = 1;

    // Header extension types (formats.md §1.3).
    public const uint ExtensionEnd = 0x00000000;
    public const uint ExtensionBackingFormat = 0xe2792aca;
    public const uint ExtensionFeatureTable = 0x6803f857;
    public const uint ExtensionBitmaps = 0x23852875;
    public const uint ExtensionCrypto = 0x0537be77;
    public const uint ExtensionDataFile = 0x44415441;

    /// <summary>Length of the bitmaps extension payload (formats.md §2.1).</summary>
    public const int BitmapsExtensionLength = 24;

    /// <summary>One feature-name-table entry: type, bit, 46 bytes of name.</summary>
    public const int FeatureTableEntryLength = 48;
    public const int FeatureNameLength = 46;

    // L1 entries (formats.md §1.5.1).
    public const ulong L1OffsetMask = 0x00fffffffffffe00;
    public const ulong L1ReservedMask = 0x7f000000000001ff;

    // L2 entries (formats.md §1.5.2).
    public const ulong OflagCopied = 1UL << 63;
    public const ulong OflagCompressed = 1UL << 62;
    public const ulong OflagZero = 1UL << 0;
    public const ulong L2OffsetMask = 0x00fffffffffffe00;
    public const ulong L2StandardReservedMask = 0x3f000000000001fe;

    // Refcount table entries (formats.md §1.4).
    public const ulong RefcountTableOffsetMask = 0xfffffffffffffe00;
    public const ulong RefcountTableReservedMask = 0x1ff;

    /// <summary>Compressed byte ranges are counted in 512-byte sectors (formats.md §1.5.3).</summary>
    public const int CompressedSectorSize = 512;

    /// <summary>Extended L2: subclusters per cluster (formats.md §1.5.4).</summary>
    public const int SubclustersPerCluster = 32;

    // Snapshot table (formats.md §1.6): QEMU's caps.
    public const int MaxSnapshots = 65536;
    public const int MaxSnapshotExtraData = 1024;

    /// <summary>Deepest backing chain Tidemark follows; a longer chain is refused as a probable loop.</summary>
    public const int MaxBackingChainDepth = 256;
}
