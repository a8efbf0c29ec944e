using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Storage.Qcow2;

internal sealed partial record Qcow2Header
{
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
