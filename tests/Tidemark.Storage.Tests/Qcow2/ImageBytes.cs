using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>Damaging an image file in place and telling whether a file changed: the malformed-image tests' tools.</summary>
internal static class ImageBytes
{
    /// <summary>Overwrites <paramref name="bytes"/> at <paramref name="offset"/>.</summary>
    public static async Task PatchAsync(string path, long offset, byte[] bytes)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Seek(offset, SeekOrigin.Begin);
        await f.WriteAsync(bytes, TestContext.Current.CancellationToken);
    }

    /// <summary>Big-endian, as every qcow2 field.</summary>
    public static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }

    /// <summary>Big-endian, as every qcow2 field.</summary>
    public static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, v);
        return b;
    }

    /// <summary>SHA-256 of the whole file, to show that a failed operation left it byte-identical.</summary>
    public static async Task<string> HashAsync(string path)
        => Convert.ToHexString(SHA256.HashData(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken)));
}
