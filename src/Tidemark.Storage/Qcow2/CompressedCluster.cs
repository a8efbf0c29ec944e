using System.IO.Compression;
using ZstdSharp;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Compressed cluster codecs (formats.md §1.5.3): type 0 is raw DEFLATE (RFC 1951, no zlib
/// header), type 1 a zstd frame. A stream is decoded until exactly one cluster is produced; input
/// after that (sector padding, the head of the next compressed cluster) is ignored.
/// </summary>
internal static class CompressedCluster
{
    /// <summary>Decodes <paramref name="input"/> into <paramref name="cluster"/> (exactly its length).</summary>
    /// <exception cref="StorageException">The stream is damaged or yields fewer bytes than a cluster.</exception>
    public static void Decompress(byte compressionType, byte[] input, Memory<byte> cluster, string path, long hostOffset)
    {
        try
        {
            using var source = new MemoryStream(input, writable: false);
            using Stream decoder = compressionType == Qcow2Layout.CompressionZstd
                ? new DecompressionStream(source)
                : new DeflateStream(source, CompressionMode.Decompress);
            var span = cluster.Span;
            var done = 0;
            while (done < span.Length)
            {
                var n = decoder.Read(span[done..]);
                if (n == 0)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"{path}: compressed cluster at offset {hostOffset} decodes to {done} bytes, expected {span.Length}");
                }

                done += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{path}: compressed cluster at offset {hostOffset} is not a valid {(compressionType == 0 ? "deflate" : "zstd")} stream", e);
        }
        catch (ZstdException e)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{path}: compressed cluster at offset {hostOffset} is not a valid zstd stream", e);
        }
    }

    /// <summary>
    /// Encodes one cluster; returns null when compression does not save at least one 512-byte
    /// sector (then the cluster is stored uncompressed, as QEMU does).
    /// </summary>
    public static byte[]? Compress(byte compressionType, ReadOnlySpan<byte> cluster)
    {
        byte[] output;
        if (compressionType == Qcow2Layout.CompressionZstd)
        {
            using var compressor = new Compressor();
            output = compressor.Wrap(cluster).ToArray();
        }
        else
        {
            using var buffer = new MemoryStream();
            using (var deflate = new DeflateStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            {
                deflate.Write(cluster);
            }

            output = buffer.ToArray();
        }

        return output.Length <= cluster.Length - Qcow2Layout.CompressedSectorSize ? output : null;
    }
}
