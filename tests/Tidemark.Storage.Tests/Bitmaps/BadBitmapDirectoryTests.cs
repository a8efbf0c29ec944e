using System.Buffers.Binary;
using FsCheck;
using FsCheck.Xunit;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// Damaged bitmap metadata in an image QEMU made: every malformation is refused with a
/// <see cref="StorageException"/> that names the field and its offset, QEMU refuses the
/// same image, and random damage never escapes as any other exception.
/// </summary>
public sealed class BadBitmapDirectoryTests : IClassFixture<BadBitmapDirectoryTests.QemuImage>
{
    private readonly QemuImage _image;

    public BadBitmapDirectoryTests(QemuImage image) => _image = image;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Where each mutation applies: the extension payload, the directory (entry 0 "b0" is 32
    // bytes, entry 1 "b1" follows), or b0's bitmap table.
    public enum Area
    {
        Extension,
        Directory,
        Table,
    }

    public static TheoryData<string, Area, int, int, ulong, StorageErrorReason, string> Cases => new()
    {
        { "ZeroBitmapCount", Area.Extension, 0, 4, 0, StorageErrorReason.InvalidHeader, "nb_bitmaps is 0" },
        { "ReservedExtensionField", Area.Extension, 4, 4, 1, StorageErrorReason.InvalidHeader, "reserved field" },
        { "CountAboveEntries", Area.Extension, 0, 4, 3, StorageErrorReason.Corrupt, "fewer than the 3" },
        { "CountBelowEntries", Area.Extension, 0, 4, 1, StorageErrorReason.Corrupt, "more bitmaps found than the 1" },
        { "HugeDirectorySize", Area.Extension, 8, 8, 0x8000000, StorageErrorReason.InvalidHeader, "bitmap_directory_size 134217728" },
        { "UnalignedDirectoryOffset", Area.Extension, 16, 8, 0xe0008, StorageErrorReason.InvalidHeader, "bitmap_directory_offset 0xe0008" },
        { "ReservedFlag", Area.Directory, 12, 4, 6, StorageErrorReason.Corrupt, "flags 0x6 has reserved bits" },
        { "GranularityBitsAbove31", Area.Directory, 17, 1, 40, StorageErrorReason.Corrupt, "granularity_bits 40" },
        { "GranularityBitsBelow9", Area.Directory, 17, 1, 8, StorageErrorReason.Corrupt, "granularity_bits 8" },
        { "UnknownType", Area.Directory, 16, 1, 2, StorageErrorReason.Corrupt, "type 2" },
        { "ExtraData", Area.Directory, 20, 4, 8, StorageErrorReason.Corrupt, "extra_data_size is 8" },
        { "EmptyName", Area.Directory, 18, 2, 0, StorageErrorReason.Corrupt, "name_size 0" },
        { "NamePastDirectoryEnd", Area.Directory, 18, 2, 1000, StorageErrorReason.Corrupt, "runs past the end" },
        { "UnalignedTableOffset", Area.Directory, 0, 8, 0xc0200, StorageErrorReason.Corrupt, "bitmap_table_offset 0xc0200" },
        { "ZeroTableSize", Area.Directory, 8, 4, 0, StorageErrorReason.Corrupt, "bitmap_table_size 0" },
        { "TableSizeNotExact", Area.Directory, 8, 4, 2, StorageErrorReason.Corrupt, "needs exactly 1" },
        { "TableTooBigForQemu", Area.Directory, 8, 4, 0x2001, StorageErrorReason.Corrupt, "more than 536870912" },
        { "DuplicateName", Area.Directory, 32 + 24 + 1, 1, (ulong)'0', StorageErrorReason.Corrupt, "'b0' appears twice" },
        { "TableEntryReservedBits", Area.Table, 0, 8, 0x00000000000c0002, StorageErrorReason.Corrupt, "reserved bits are set" },
        { "TableEntryAllOnesWithOffset", Area.Table, 0, 8, 0x00000000000c0001, StorageErrorReason.Corrupt, "bit 0 (all ones)" },
        { "TableEntryUnaligned", Area.Table, 0, 8, 0x00000000000c0200, StorageErrorReason.Corrupt, "not a multiple of the cluster size" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task MalformedBitmapMetadata_IsRefusedNamingFieldAndOffset(string name, Area area, int at, int width, ulong value, StorageErrorReason reason, string expected)
    {
        var bytes = _image.Bytes.ToArray();
        var position = area switch
        {
            Area.Extension => _image.ExtensionPosition,
            Area.Directory => _image.DirectoryOffset,
            _ => _image.TableOffset,
        } + at;
        Write(bytes, position, width, value);

        var space = ReadOnlyClusterSpace.FromBytes(bytes);
        var error = await Assert.ThrowsAsync<StorageException>(async () => await Qcow2BitmapSet.LoadAsync(space, Ct));

        Assert.Equal(reason, error.Reason);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        if (area != Area.Extension)
        {
            Assert.Matches("offset 0x[0-9a-f]+", error.Message);
        }

        // QEMU refuses the same image.
        using var dir = new TempDirectory();
        var path = dir.File($"{name}.qcow2");
        await File.WriteAllBytesAsync(path, bytes, Ct);
        var info = await Peer.RunAsync("qemu-img", ["info", "-f", "qcow2", path]);
        Assert.NotEqual(0, info.ExitCode);
    }

    [Property(MaxTest = 400)]
    public void RandomDamage_LoadsOrFailsWithABitmapError(int seed, PositiveInt flips)
    {
        var random = new Random(seed);
        var bytes = _image.Bytes.ToArray();
        var regions = new[] { (_image.ExtensionPosition, 24), (_image.DirectoryOffset, 64), (_image.TableOffset, 8) };
        for (var i = 0; i < 1 + (flips.Get % 6); i++)
        {
            var (start, length) = regions[random.Next(regions.Length)];
            bytes[start + random.Next(length)] ^= (byte)(1 << random.Next(8));
        }

        var space = ReadOnlyClusterSpace.FromBytes(bytes);
        try
        {
            var set = Qcow2BitmapSet.LoadAsync(space, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            Assert.All(set.Bitmaps, b => Assert.True(b.Inconsistent || b.Bitmap.Size == space.VirtualSize));
        }
        catch (StorageException e)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
        }
    }

    private static void Write(byte[] bytes, int position, int width, ulong value)
    {
        switch (width)
        {
            case 1:
                bytes[position] = (byte)value;
                break;
            case 2:
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(position), (ushort)value);
                break;
            case 4:
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(position), (uint)value);
                break;
            default:
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(position), value);
                break;
        }
    }

    /// <summary>One QEMU-made image with two bitmaps (b0 has one data cluster), shared by the cases.</summary>
    public sealed class QemuImage : IAsyncLifetime
    {
        public byte[] Bytes { get; private set; } = [];

        public int ExtensionPosition { get; private set; }

        public int DirectoryOffset { get; private set; }

        public int TableOffset { get; private set; }

        public async ValueTask InitializeAsync()
        {
            using var dir = new TempDirectory();
            var path = dir.File("disk.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "64M");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", path, "b1");
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", path);
            Bytes = await File.ReadAllBytesAsync(path);
            var space = ReadOnlyClusterSpace.FromBytes(Bytes);
            ExtensionPosition = space.BitmapsExtensionPosition;
            DirectoryOffset = (int)BinaryPrimitives.ReadUInt64BigEndian(Bytes.AsSpan(ExtensionPosition + 16));
            TableOffset = (int)BinaryPrimitives.ReadUInt64BigEndian(Bytes.AsSpan(DirectoryOffset));
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
