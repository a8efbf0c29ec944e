using System.Buffers.Binary;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// A read-only <see cref="IQcow2ClusterSpace"/> over the bytes of a qcow2 file that QEMU made:
/// just enough header parsing (formats.md §1.2, §1.3) to find the bitmaps extension, so the
/// bitmap codec can be checked against QEMU's own files, and against mutations of them,
/// independently of the image implementation.
/// </summary>
internal sealed class ReadOnlyClusterSpace : IQcow2ClusterSpace
{
    private readonly byte[] _file;

    private ReadOnlyClusterSpace(byte[] file, int clusterSize, long virtualSize, ReadOnlyMemory<byte>? bitmaps, int bitmapsPosition)
    {
        _file = file;
        ClusterSize = clusterSize;
        VirtualSize = virtualSize;
        BitmapsExtension = bitmaps;
        BitmapsExtensionPosition = bitmapsPosition;
    }

    public int ClusterSize { get; }

    public long VirtualSize { get; }

    public bool IsReadOnly => true;

    public bool CanStoreBitmaps => true;

    public ReadOnlyMemory<byte>? BitmapsExtension { get; }

    /// <summary>Where the bitmaps extension's payload starts in the file (-1 when absent).</summary>
    public int BitmapsExtensionPosition { get; }

    public static ReadOnlyClusterSpace Open(string path) => FromBytes(File.ReadAllBytes(path));

    public static ReadOnlyClusterSpace FromBytes(byte[] file)
    {
        var header = file.AsSpan(0, Math.Min(file.Length, 4096));
        var version = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
        var clusterBits = BinaryPrimitives.ReadInt32BigEndian(header[20..]);
        var size = BinaryPrimitives.ReadInt64BigEndian(header[24..]);
        var autoclear = version >= 3 ? BinaryPrimitives.ReadUInt64BigEndian(header[88..]) : 0;
        var position = version >= 3 ? BinaryPrimitives.ReadInt32BigEndian(header[100..]) : 72;
        ReadOnlyMemory<byte>? bitmaps = null;
        var bitmapsPosition = -1;
        while (position + 8 <= header.Length)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(header[position..]);
            var length = BinaryPrimitives.ReadInt32BigEndian(header[(position + 4)..]);
            if (type == 0 || length < 0 || length > header.Length - position - 8)
            {
                break;
            }

            if (type == 0x23852875 && (autoclear & 1) != 0)
            {
                bitmaps = header.Slice(position + 8, length).ToArray();
                bitmapsPosition = position + 8;
            }

            position += 8 + ((length + 7) & ~7);
        }

        return new ReadOnlyClusterSpace(file, 1 << clusterBits, size, bitmaps, bitmapsPosition);
    }

    public ValueTask ReadMetadataAsync(long hostOffset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        buffer.Span.Clear();
        if (hostOffset < _file.Length)
        {
            var available = (int)Math.Min(buffer.Length, _file.Length - hostOffset);
            _file.AsSpan((int)hostOffset, available).CopyTo(buffer.Span);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<long> AllocateClustersAsync(int count, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask FreeClustersAsync(long hostOffset, int count, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask WriteMetadataAsync(long hostOffset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask FlushAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask WriteBitmapsExtensionAsync(ReadOnlyMemory<byte>? extension, bool bitmapsConsistent, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");
}
