using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// Sets a flag of one persistent bitmap's directory entry in a qcow2 file by hand, as a crash
/// leaves it (IN_USE) without touching any other bitmap of the image: <c>qemu-io -c abort</c>
/// would leave every bitmap the image holds IN_USE. The layout is QEMU's
/// (docs/interop/qcow2.txt, "Bitmaps extension" and "Bitmap directory").
/// </summary>
internal static class Qcow2BitmapFlags
{
    /// <summary>Bit 0 of an entry's flags: the bitmap was in use and may be inconsistent.</summary>
    public const uint InUse = 1;

    private const uint BitmapsExtension = 0x23852875;
    private const int HeaderLengthOffset = 100;

    // Bitmap directory entry: table offset (8), table size (4), flags (4), type (1),
    // granularity bits (1), name size (2), extra data size (4), extra data, name, padding to 8.
    private const int EntryFlagsOffset = 12;
    private const int EntryFixedSize = 24;

    public static async Task SetAsync(string image, string bitmap, uint flag)
    {
        await using var file = new FileStream(image, FileMode.Open, FileAccess.ReadWrite);
        var header = new byte[4096];
        await file.ReadExactlyAsync(header, TestContext.Current.CancellationToken);
        var offset = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(HeaderLengthOffset));
        while (true)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(offset));
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(offset + 4));
            Assert.True(type != 0, $"{image} has no bitmaps extension");
            if (type == BitmapsExtension)
            {
                var size = (int)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(offset + 16));
                var directoryOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(offset + 24));
                var directory = new byte[size];
                file.Position = directoryOffset;
                await file.ReadExactlyAsync(directory, TestContext.Current.CancellationToken);
                for (var entry = 0; entry < size;)
                {
                    var nameSize = BinaryPrimitives.ReadUInt16BigEndian(directory.AsSpan(entry + 18));
                    var extra = (int)BinaryPrimitives.ReadUInt32BigEndian(directory.AsSpan(entry + 20));
                    var name = Encoding.UTF8.GetString(directory, entry + EntryFixedSize + extra, nameSize);
                    if (name == bitmap)
                    {
                        var flags = BinaryPrimitives.ReadUInt32BigEndian(directory.AsSpan(entry + EntryFlagsOffset)) | flag;
                        var bytes = new byte[4];
                        BinaryPrimitives.WriteUInt32BigEndian(bytes, flags);
                        file.Position = directoryOffset + entry + EntryFlagsOffset;
                        await file.WriteAsync(bytes, TestContext.Current.CancellationToken);
                        return;
                    }

                    entry += (EntryFixedSize + extra + nameSize + 7) & ~7;
                }

                Assert.Fail($"{image} has no bitmap {bitmap}");
            }

            offset += 8 + ((length + 7) & ~7);
        }
    }
}
