using System.Buffers.Binary;
using System.Text;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// One entry of the bitmap directory (formats.md §2.2): a 24-byte fixed part, then extra data
/// (always empty here: QEMU refuses any), then the name, padded to a multiple of 8 bytes.
/// </summary>
/// <param name="TableOffset">bitmap_table_offset: host offset of the bitmap table, cluster aligned.</param>
/// <param name="TableSize">bitmap_table_size: number of u64 entries in the table.</param>
/// <param name="Flags">IN_USE and AUTO.</param>
/// <param name="GranularityBits">log2 of the granularity, 9..31.</param>
/// <param name="Name">The bitmap's name, 1..1023 UTF-8 bytes.</param>
internal readonly record struct BitmapDirectoryEntry(long TableOffset, uint TableSize, BitmapEntryFlags Flags, int GranularityBits, string Name)
{
    /// <summary>Size of the fixed part.</summary>
    public const int FixedSize = 24;

    /// <summary>The only bitmap type: a dirty tracking bitmap.</summary>
    public const byte DirtyTrackingType = 1;

    /// <summary>QEMU's BME_MAX_NAME_SIZE.</summary>
    public const int MaxNameBytes = 1023;

    /// <summary>QEMU's BME_MAX_TABLE_SIZE (entries).</summary>
    public const uint MaxTableSize = 0x8000000;

    /// <summary>QEMU's BME_MAX_PHYS_SIZE: 512 MiB of bitmap data, bounding what a bitmap may cost in memory.</summary>
    public const long MaxDataSize = 0x20000000;

    // Field offsets inside the fixed part (formats.md §2.2).
    private const int TableOffsetOffset = 0;
    private const int TableSizeOffset = 8;
    private const int FlagsOffset = 12;
    private const int TypeOffset = 16;
    private const int GranularityBitsOffset = 17;
    private const int NameSizeOffset = 18;
    private const int ExtraDataSizeOffset = 20;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Bytes this entry takes in the directory.</summary>
    public int EncodedSize => EncodedSizeFor(Encoding.UTF8.GetByteCount(Name));

    /// <summary>Directory bytes of an entry whose name has <paramref name="nameBytes"/> bytes.</summary>
    public static int EncodedSizeFor(int nameBytes) => (FixedSize + nameBytes + 7) & ~7;

    /// <summary>Checks a bitmap name: 1..1023 UTF-8 bytes (formats.md §2.5).</summary>
    public static void CheckName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes == 0 || bytes > MaxNameBytes)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"bitmap name must be 1..{MaxNameBytes} bytes, '{name}' has {bytes}");
        }
    }

    /// <summary>
    /// Parses the entry at <paramref name="position"/> of the directory bytes and checks what
    /// QEMU's check_dir_entry checks; returns the entry and its encoded size.
    /// </summary>
    /// <param name="directory">The whole directory.</param>
    /// <param name="position">Where the entry starts inside <paramref name="directory"/>.</param>
    /// <param name="directoryOffset">Host offset of the directory, for error messages.</param>
    /// <param name="index">Entry number, for error messages.</param>
    /// <param name="clusterSize">The image's cluster size.</param>
    /// <param name="virtualSize">The image's virtual size.</param>
    /// <exception cref="StorageException">The entry is truncated or a field is out of range.</exception>
    public static (BitmapDirectoryEntry Entry, int Size) Read(ReadOnlySpan<byte> directory, int position, long directoryOffset, int index, int clusterSize, long virtualSize)
    {
        var where = $"bitmap directory entry {index} at offset 0x{directoryOffset + position:x}";
        if (directory.Length - position < FixedSize)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{where}: Broken bitmap directory: truncated (the directory ends {directory.Length - position} bytes after its start)");
        }

        var e = directory[position..];
        var tableOffset = BinaryPrimitives.ReadUInt64BigEndian(e[TableOffsetOffset..]);
        var tableSize = BinaryPrimitives.ReadUInt32BigEndian(e[TableSizeOffset..]);
        var flags = BinaryPrimitives.ReadUInt32BigEndian(e[FlagsOffset..]);
        var type = e[TypeOffset];
        var granularityBits = e[GranularityBitsOffset];
        var nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[NameSizeOffset..]);
        var extraDataSize = BinaryPrimitives.ReadUInt32BigEndian(e[ExtraDataSizeOffset..]);

        // QEMU's order (bitmap_list_load): the whole entry, extra data included, must fit in
        // the directory before its extra data or its fields are judged.
        var withExtra = ((long)FixedSize + extraDataSize + nameSize + 7) & ~7L;
        if (withExtra > directory.Length - position)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{where}: Broken bitmap directory: entry of {withExtra} bytes runs past the end of the {directory.Length}-byte directory");
        }

        if (extraDataSize != 0)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{where}: Bitmap extra data is not supported (extra_data_size is {extraDataSize})");
        }

        var size = EncodedSizeFor(nameSize);

        string name;
        try
        {
            name = StrictUtf8.GetString(e.Slice(FixedSize, nameSize));
        }
        catch (DecoderFallbackException)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{where}: Broken bitmap directory: name is not valid UTF-8");
        }

        // QEMU's words lead: check_dir_entry failing is "doesn't satisfy the constraints",
        // an entry that does not fit is a "Broken bitmap directory".
        var named = where;
        if (nameSize == 0 || nameSize > MaxNameBytes)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: name_size {nameSize} is outside 1..{MaxNameBytes}");
        }

        if (type != DirtyTrackingType)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: type {type} is not 1 (dirty tracking bitmap)");
        }

        if ((flags & ~(uint)BitmapEntryFlags.KnownMask) != 0)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: flags 0x{flags:x} has reserved bits set (known: 0x{(uint)BitmapEntryFlags.KnownMask:x})");
        }

        if (granularityBits < DirtyBitmap.MinGranularityBits || granularityBits > DirtyBitmap.MaxGranularityBits)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: granularity_bits {granularityBits} is outside {DirtyBitmap.MinGranularityBits}..{DirtyBitmap.MaxGranularityBits}");
        }

        if (tableOffset == 0 || tableOffset % (ulong)clusterSize != 0 || tableOffset > long.MaxValue)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: bitmap_table_offset 0x{tableOffset:x} is not a non-zero multiple of the cluster size {clusterSize}");
        }

        if (tableSize == 0 || tableSize > MaxTableSize)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: bitmap_table_size {tableSize} is outside 1..{MaxTableSize}");
        }

        var dataSize = (long)tableSize * clusterSize;
        if (dataSize > MaxDataSize)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: bitmap_table_size {tableSize} describes {dataSize} bytes of data, more than {MaxDataSize}");
        }

        // A bitmap left IN_USE may have a stale size (an image resized without saving it), so
        // only a consistent one must cover the whole disk (QEMU check_dir_entry).
        if ((flags & (uint)BitmapEntryFlags.InUse) == 0 && BitmapTable.CoveredBytes(tableSize, clusterSize, granularityBits) < virtualSize)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{named}: Bitmap '{name}' doesn't satisfy the constraints: bitmap_table_size {tableSize} is too small for a {virtualSize}-byte disk at granularity {1L << granularityBits}");
        }

        return (new BitmapDirectoryEntry((long)tableOffset, tableSize, (BitmapEntryFlags)flags, granularityBits, name), size);
    }

    /// <summary>Writes the entry (fixed part, name, zero padding) at the start of <paramref name="destination"/>; returns its size.</summary>
    public int Write(Span<byte> destination)
    {
        var nameBytes = Encoding.UTF8.GetBytes(Name);
        var size = EncodedSizeFor(nameBytes.Length);
        var e = destination[..size];
        e.Clear();
        BinaryPrimitives.WriteUInt64BigEndian(e[TableOffsetOffset..], (ulong)TableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(e[TableSizeOffset..], TableSize);
        BinaryPrimitives.WriteUInt32BigEndian(e[FlagsOffset..], (uint)Flags);
        e[TypeOffset] = DirtyTrackingType;
        e[GranularityBitsOffset] = (byte)GranularityBits;
        BinaryPrimitives.WriteUInt16BigEndian(e[NameSizeOffset..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(e[ExtraDataSizeOffset..], 0);
        nameBytes.CopyTo(e[FixedSize..]);
        return size;
    }
}
