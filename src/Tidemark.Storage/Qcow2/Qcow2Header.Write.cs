using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Storage.Qcow2;

internal sealed partial record Qcow2Header
{
    // The page size of the host file systems QEMU images live on (x86-64, arm64 4K pages).
    private const int AtomicWriteBytes = 4096;

    /// <summary>
    /// Lays out cluster 0: header fields, extensions in QEMU's order (backing format first), the
    /// end marker, then the backing file name right after it (formats.md §1.3).
    /// </summary>
    /// <exception cref="StorageException">The extensions and backing name do not fit in one cluster.</exception>
    public byte[] Serialize()
    {
        var cluster = new byte[ClusterSize];
        var span = cluster.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.MagicOffset..], Qcow2Layout.Magic);
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.VersionOffset..], (uint)Version);
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.ClusterBitsOffset..], (uint)ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.SizeOffset..], (ulong)Size);
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.L1SizeOffset..], (uint)L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.L1TableOffsetOffset..], (ulong)L1TableOffset);
        BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.RefcountTableOffsetOffset..], (ulong)RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.RefcountTableClustersOffset..], (uint)RefcountTableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.SnapshotCountOffset..], (uint)SnapshotCount);
        BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.SnapshotsOffsetOffset..], (ulong)SnapshotsOffset);
        var headerLength = Qcow2Layout.V2HeaderLength;
        if (Version >= 3)
        {
            BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.IncompatibleFeaturesOffset..], IncompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.CompatibleFeaturesOffset..], CompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.AutoclearFeaturesOffset..], AutoclearFeatures);
            BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.RefcountOrderOffset..], (uint)RefcountOrder);
            headerLength = HeaderLength;
            BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.HeaderLengthOffset..], (uint)headerLength);
            if (headerLength > Qcow2Layout.CompressionTypeOffset)
            {
                span[Qcow2Layout.CompressionTypeOffset] = CompressionType;
            }

            UnknownFields.Span.CopyTo(span[Qcow2Layout.V3HeaderLength..]);
        }

        var at = headerLength;
        if (BackingFormat is not null)
        {
            at = Put(span, at, new Qcow2HeaderExtension(Qcow2Layout.ExtensionBackingFormat, Encoding.UTF8.GetBytes(BackingFormat)));
        }

        foreach (var extension in Extensions)
        {
            at = Put(span, at, extension);
        }

        at = Put(span, at, new Qcow2HeaderExtension(Qcow2Layout.ExtensionEnd, ReadOnlyMemory<byte>.Empty));
        if (BackingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(BackingFile);
            if (name.Length > Qcow2Layout.MaxBackingFileNameLength || at + name.Length > ClusterSize)
            {
                throw new StorageException(StorageErrorReason.InvalidRequest, $"backing file name '{BackingFile}' ({name.Length} bytes) does not fit in cluster 0 (at most {Qcow2Layout.MaxBackingFileNameLength} bytes)");
            }

            name.CopyTo(span[at..]);
            BinaryPrimitives.WriteUInt64BigEndian(span[Qcow2Layout.BackingFileOffsetOffset..], (ulong)at);
            BinaryPrimitives.WriteUInt32BigEndian(span[Qcow2Layout.BackingFileSizeOffset..], (uint)name.Length);
        }

        return cluster;
    }

    /// <summary>
    /// How much of cluster 0 a header rewrite writes: every byte the new header or the old one
    /// uses, rounded up to a whole page when that is still one page, else the whole cluster.
    /// A single pwrite within the first page of a local file is never left half done by a
    /// killed process (the kernel copies a page at a time and checks for a fatal signal only
    /// between pages), which the bitmaps' header switch relies on; beyond what both headers
    /// use, cluster 0 is zero either way (formats.md §1.3), so it need not be rewritten.
    /// </summary>
    public static int RewriteLength(byte[] next, byte[] previous)
    {
        ArgumentNullException.ThrowIfNull(next);
        ArgumentNullException.ThrowIfNull(previous);
        var used = Math.Max(next.AsSpan().LastIndexOfAnyExcept((byte)0), previous.AsSpan().LastIndexOfAnyExcept((byte)0)) + 1;
        return used <= AtomicWriteBytes ? Math.Min(AtomicWriteBytes, next.Length) : next.Length;
    }

    private int Put(Span<byte> cluster, int at, Qcow2HeaderExtension extension)
    {
        if (at + extension.StoredLength > cluster.Length)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"header extensions do not fit in cluster 0 ({ClusterSize} bytes)");
        }

        BinaryPrimitives.WriteUInt32BigEndian(cluster[at..], extension.Type);
        BinaryPrimitives.WriteUInt32BigEndian(cluster[(at + 4)..], (uint)extension.Data.Length);
        extension.Data.Span.CopyTo(cluster[(at + Qcow2HeaderExtension.PrefixLength)..]);
        return at + extension.StoredLength;
    }
}
