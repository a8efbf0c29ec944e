using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// A read-only <see cref="IQcow2ClusterSpace"/> over a qcow2 file that QEMU made: just enough
/// header parsing (formats.md §1.2, §1.3) to find the bitmaps extension, so the bitmap codec
/// can be checked against QEMU's own files independently of the image implementation.
/// </summary>
internal sealed class ReadOnlyClusterSpace : IQcow2ClusterSpace, IDisposable
{
    private readonly SafeFileHandle _file;

    private ReadOnlyClusterSpace(SafeFileHandle file, int clusterSize, long virtualSize, ReadOnlyMemory<byte>? bitmaps)
    {
        _file = file;
        ClusterSize = clusterSize;
        VirtualSize = virtualSize;
        BitmapsExtension = bitmaps;
    }

    public int ClusterSize { get; }

    public long VirtualSize { get; }

    public bool IsReadOnly => true;

    public ReadOnlyMemory<byte>? BitmapsExtension { get; }

    public static ReadOnlyClusterSpace Open(string path)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var header = new byte[4096];
        RandomAccess.Read(file, header, 0);
        var version = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        var clusterBits = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(20));
        var size = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(24));
        var autoclear = version >= 3 ? BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(88)) : 0;
        var position = version >= 3 ? BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(100)) : 72;
        ReadOnlyMemory<byte>? bitmaps = null;
        while (position + 8 <= header.Length)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(position));
            var length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(position + 4));
            if (type == 0)
            {
                break;
            }

            if (type == 0x23852875 && (autoclear & 1) != 0)
            {
                bitmaps = header.AsMemory(position + 8, length).ToArray();
            }

            position += 8 + ((length + 7) & ~7);
        }

        return new ReadOnlyClusterSpace(file, 1 << clusterBits, size, bitmaps);
    }

    public async ValueTask ReadMetadataAsync(long hostOffset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        buffer.Span.Clear();
        await RandomAccess.ReadAsync(_file, buffer, hostOffset, cancellationToken);
    }

    public ValueTask<long> AllocateClustersAsync(int count, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask FreeClustersAsync(long hostOffset, int count, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask WriteMetadataAsync(long hostOffset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask FlushAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public ValueTask WriteBitmapsExtensionAsync(ReadOnlyMemory<byte>? extension, bool bitmapsConsistent, CancellationToken cancellationToken) => throw new InvalidOperationException("read-only");

    public void Dispose() => _file.Dispose();
}
