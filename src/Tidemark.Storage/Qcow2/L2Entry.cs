namespace Tidemark.Storage.Qcow2;

/// <summary>What a guest cluster is, as its L2 entry says (formats.md §1.5.2 table).</summary>
internal enum ClusterKind
{
    /// <summary>Entry 0: backing file data, or zeroes without a backing file.</summary>
    Unallocated,

    /// <summary>Zero flag, no host cluster: zeroes, backing not consulted.</summary>
    ZeroPlain,

    /// <summary>Zero flag with a preallocated host cluster: zeroes; the cluster is still referenced.</summary>
    ZeroAllocated,

    /// <summary>A host cluster with data.</summary>
    Normal,

    /// <summary>A compressed byte range (§1.5.3).</summary>
    Compressed,
}

/// <summary>One decoded L2 entry (and its subcluster bitmap with extended L2).</summary>
internal readonly record struct L2Entry(ulong Raw, ulong SubclusterBitmap, int ClusterBits, bool ExtendedL2)
{
    public bool IsCompressed => (Raw & Qcow2Layout.OflagCompressed) != 0;

    public bool IsCopied => (Raw & Qcow2Layout.OflagCopied) != 0;

    /// <summary>Host offset of a standard entry's cluster (0 when none).</summary>
    public long HostOffset => (long)(Raw & Qcow2Layout.L2OffsetMask);

    public ClusterKind Kind
    {
        get
        {
            if (IsCompressed)
            {
                return ClusterKind.Compressed;
            }

            var zero = !ExtendedL2 && (Raw & Qcow2Layout.OflagZero) != 0;
            if (HostOffset == 0)
            {
                return zero ? ClusterKind.ZeroPlain : ClusterKind.Unallocated;
            }

            return zero ? ClusterKind.ZeroAllocated : ClusterKind.Normal;
        }
    }

    /// <summary>Bit position where a compressed descriptor's sector count starts: 62 - (cluster_bits - 8).</summary>
    private int CompressedOffsetBits => 62 - (ClusterBits - 8);

    /// <summary>Host byte offset of a compressed stream.</summary>
    public long CompressedOffset => (long)(Raw & ((1UL << CompressedOffsetBits) - 1));

    /// <summary>Bytes from <see cref="CompressedOffset"/> to the end of its last 512-byte sector.</summary>
    public int CompressedLength
    {
        get
        {
            var extraSectors = (long)((Raw & ~Qcow2Layout.OflagCopied & ~Qcow2Layout.OflagCompressed) >> CompressedOffsetBits);
            var offset = CompressedOffset;
            var end = (offset & ~(long)(Qcow2Layout.CompressedSectorSize - 1)) + ((extraSectors + 1) * Qcow2Layout.CompressedSectorSize);
            return (int)(end - offset);
        }
    }

    /// <summary>Encodes a compressed descriptor for <paramref name="length"/> bytes at <paramref name="offset"/>.</summary>
    public static ulong Compressed(long offset, int length, int clusterBits)
    {
        var extraSectors = ((offset + length - 1) / Qcow2Layout.CompressedSectorSize) - (offset / Qcow2Layout.CompressedSectorSize);
        return Qcow2Layout.OflagCompressed | ((ulong)extraSectors << (62 - (clusterBits - 8))) | (ulong)offset;
    }
}
