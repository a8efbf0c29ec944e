using System.Buffers.Binary;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// A bitmap table (formats.md §2.3): one u64 per cluster of bitmap data, giving the host
/// offset of that data cluster, or 0 for "all zeroes", or 1 for "all ones" (never written by
/// QEMU, honoured on read).
/// </summary>
internal static class BitmapTable
{
    /// <summary>Bits 9..55: host offset of the data cluster.</summary>
    public const ulong OffsetMask = 0x00fffffffffffe00;

    /// <summary>Bits 1..8 and 56..63: reserved, must be zero.</summary>
    public const ulong ReservedMask = 0xff000000000001fe;

    /// <summary>Bit 0 with no offset: every bit of this data cluster is set.</summary>
    public const ulong AllOnes = 1;

    /// <summary>Bytes of one table entry.</summary>
    public const int EntrySize = sizeof(ulong);

    /// <summary>The exact table size QEMU requires for a consistent bitmap: ceil(ceil(ceil(size / g) / 8) / cluster).</summary>
    public static long ExpectedSize(long virtualSize, int granularityBits, int clusterSize)
    {
        var bits = ((virtualSize - 1) >> granularityBits) + 1;
        var bytes = (bits + 7) >> 3;
        return (bytes + clusterSize - 1) / clusterSize;
    }

    /// <summary>Guest bytes that <paramref name="tableSize"/> data clusters can describe (saturating).</summary>
    public static long CoveredBytes(uint tableSize, int clusterSize, int granularityBits)
    {
        var bits = (long)tableSize * clusterSize * 8;
        return bits > long.MaxValue >> granularityBits ? long.MaxValue : bits << granularityBits;
    }

    /// <summary>Decodes and checks a table read from <paramref name="tableOffset"/> (QEMU check_table_entry).</summary>
    /// <param name="bytes">The table as stored: big-endian u64 entries.</param>
    /// <param name="tableOffset">Host offset of the table, for error messages.</param>
    /// <param name="clusterSize">The image's cluster size.</param>
    /// <param name="name">The bitmap's name, for error messages.</param>
    /// <exception cref="StorageException">An entry has reserved bits, an unaligned offset or bit 0 next to an offset.</exception>
    public static ulong[] Decode(ReadOnlySpan<byte> bytes, long tableOffset, int clusterSize, string name)
    {
        var entries = new ulong[bytes.Length / EntrySize];
        for (var i = 0; i < entries.Length; i++)
        {
            var entry = BinaryPrimitives.ReadUInt64BigEndian(bytes[(i * EntrySize)..]);
            var offset = entry & OffsetMask;
            string? problem = null;
            if ((entry & ReservedMask) != 0)
            {
                problem = "reserved bits are set";
            }
            else if (offset != 0 && (entry & AllOnes) != 0)
            {
                problem = "bit 0 (all ones) is set next to a data offset";
            }
            else if (offset % (ulong)clusterSize != 0)
            {
                problem = $"data offset is not a multiple of the cluster size {clusterSize}";
            }

            if (problem is not null)
            {
                throw new StorageException(
                    StorageErrorReason.Corrupt,
                    $"Could not read bitmap_table table from image for bitmap '{name}': table entry {i} at offset 0x{tableOffset + (i * EntrySize):x} is 0x{entry:x16}: {problem}");
            }

            entries[i] = entry;
        }

        return entries;
    }

    /// <summary>Encodes entries as stored: big-endian u64s, zero-padded to whole clusters.</summary>
    public static byte[] Encode(ReadOnlySpan<ulong> entries, int clusterSize)
    {
        var bytes = new byte[RoundUp((long)entries.Length * EntrySize, clusterSize)];
        for (var i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * EntrySize), entries[i]);
        }

        return bytes;
    }

    /// <summary>Clusters taken by a table of <paramref name="tableSize"/> entries.</summary>
    public static int Clusters(long tableSize, int clusterSize) => (int)(RoundUp(tableSize * EntrySize, clusterSize) / clusterSize);

    /// <summary>Loads bitmap data described by <paramref name="entries"/> into <paramref name="bitmap"/> (formats.md §2.4).</summary>
    public static async ValueTask LoadDataAsync(IQcow2ClusterSpace space, ulong[] entries, DirtyBitmap bitmap, CancellationToken cancellationToken)
    {
        var clusterSize = space.ClusterSize;
        var buffer = new byte[clusterSize];
        for (var i = 0; i < entries.Length; i++)
        {
            var dataOffset = (long)i * clusterSize;
            if (dataOffset >= bitmap.DataLength)
            {
                break;
            }

            var entry = entries[i];
            var hostOffset = (long)(entry & OffsetMask);
            if (hostOffset != 0)
            {
                await space.ReadMetadataAsync(hostOffset, buffer, cancellationToken).ConfigureAwait(false);
                bitmap.OrData(dataOffset, buffer);
            }
            else if ((entry & AllOnes) != 0)
            {
                bitmap.SetData(dataOffset, clusterSize);
            }
        }
    }

    /// <summary>
    /// Writes the data clusters of <paramref name="bitmap"/> that hold a set bit into freshly
    /// allocated clusters and returns the table that describes them; all-clean clusters get
    /// entry 0, as QEMU's store_bitmap_data does. Nothing points at the new clusters yet, so a
    /// crash here leaks them and changes nothing else.
    /// </summary>
    public static async ValueTask<ulong[]> StoreDataAsync(IQcow2ClusterSpace space, DirtyBitmap bitmap, CancellationToken cancellationToken)
    {
        var clusterSize = space.ClusterSize;
        var entries = new ulong[ExpectedSize(bitmap.Size, bitmap.GranularityBits, clusterSize)];
        var buffer = new byte[clusterSize];
        try
        {
            for (var i = 0; i < entries.Length; i++)
            {
                var dataOffset = (long)i * clusterSize;
                if (bitmap.IsDataClean(dataOffset, clusterSize))
                {
                    continue;
                }

                bitmap.CopyDataTo(dataOffset, buffer);
                var hostOffset = await space.AllocateClustersAsync(1, cancellationToken).ConfigureAwait(false);
                entries[i] = (ulong)hostOffset;
                await space.WriteMetadataAsync(hostOffset, buffer, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await FreeDataAsync(space, entries, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        return entries;
    }

    /// <summary>Drops the data clusters <paramref name="entries"/> point at.</summary>
    public static async ValueTask FreeDataAsync(IQcow2ClusterSpace space, ulong[] entries, CancellationToken cancellationToken)
    {
        foreach (var entry in entries)
        {
            var hostOffset = (long)(entry & OffsetMask);
            if (hostOffset != 0)
            {
                await space.FreeClustersAsync(hostOffset, 1, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static long RoundUp(long value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
