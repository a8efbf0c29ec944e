using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// The payload of the bitmaps header extension, type 0x23852875, exactly 24 bytes
/// (formats.md §2.1): where the bitmap directory is and how many entries it holds.
/// </summary>
/// <param name="BitmapCount">nb_bitmaps: 1 to <see cref="MaxBitmaps"/>.</param>
/// <param name="DirectorySize">bitmap_directory_size in bytes: 1 to <see cref="MaxDirectorySize"/>.</param>
/// <param name="DirectoryOffset">bitmap_directory_offset: cluster aligned, non-zero.</param>
internal readonly record struct BitmapsExtension(uint BitmapCount, long DirectorySize, long DirectoryOffset)
{
    /// <summary>The header extension type.</summary>
    public const uint ExtensionType = 0x23852875;

    /// <summary>Payload length; QEMU refuses any other.</summary>
    public const int Length = 24;

    /// <summary>QEMU 7.2 QCOW2_MAX_BITMAPS.</summary>
    public const uint MaxBitmaps = 65535;

    /// <summary>QEMU 7.2 QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1 KiB per bitmap at most (~64 MiB), a cap applied before the directory is read.</summary>
    public const long MaxDirectorySize = 1024L * MaxBitmaps;

    // Field offsets inside the payload (formats.md §2.1).
    private const int CountOffset = 0;
    private const int ReservedOffset = 4;
    private const int DirectorySizeOffset = 8;
    private const int DirectoryOffsetOffset = 16;

    /// <summary>Parses and checks the payload (formats.md §2.1 rules, as QEMU enforces them).</summary>
    /// <exception cref="StorageException">A field breaks the rules; the message names it.</exception>
    public static BitmapsExtension Read(ReadOnlySpan<byte> payload, int clusterSize)
    {
        if (payload.Length != Length)
        {
            throw Bad($"length is {payload.Length}, must be {Length}");
        }

        var count = BinaryPrimitives.ReadUInt32BigEndian(payload[CountOffset..]);
        var reserved = BinaryPrimitives.ReadUInt32BigEndian(payload[ReservedOffset..]);
        var size = BinaryPrimitives.ReadUInt64BigEndian(payload[DirectorySizeOffset..]);
        var offset = BinaryPrimitives.ReadUInt64BigEndian(payload[DirectoryOffsetOffset..]);
        if (count == 0)
        {
            throw Bad("nb_bitmaps is 0 (an extension must describe at least one bitmap)");
        }

        if (count > MaxBitmaps)
        {
            throw Bad($"nb_bitmaps {count} exceeds {MaxBitmaps}");
        }

        if (reserved != 0)
        {
            throw Bad($"reserved field (payload byte {ReservedOffset}) is 0x{reserved:x}, must be 0");
        }

        if (size == 0 || size > MaxDirectorySize)
        {
            throw Bad($"bitmap_directory_size {size} is outside 1..{MaxDirectorySize}");
        }

        if (offset == 0 || offset % (ulong)clusterSize != 0 || offset > long.MaxValue - (ulong)size)
        {
            throw Bad($"bitmap_directory_offset 0x{offset:x} is not a non-zero multiple of the cluster size {clusterSize}");
        }

        return new BitmapsExtension(count, (long)size, (long)offset);
    }

    /// <summary>The 24-byte payload.</summary>
    public byte[] ToBytes()
    {
        var payload = new byte[Length];
        BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(CountOffset), BitmapCount);
        BinaryPrimitives.WriteUInt64BigEndian(payload.AsSpan(DirectorySizeOffset), (ulong)DirectorySize);
        BinaryPrimitives.WriteUInt64BigEndian(payload.AsSpan(DirectoryOffsetOffset), (ulong)DirectoryOffset);
        return payload;
    }

    private static StorageException Bad(string what) =>
        new(StorageErrorReason.InvalidHeader, $"bitmaps header extension (type 0x{ExtensionType:x8}): {what}");
}
