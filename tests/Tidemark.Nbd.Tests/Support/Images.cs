using Tidemark.Testing;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>Test images made with qemu-io, so their content comes from a peer.</summary>
public static class Images
{
    /// <summary>
    /// A 64 MiB sparse raw image with data at 0 (64 KiB, 0xab), 3 MiB (128 KiB, 0xcd) and
    /// 16 MiB (64 KiB, 0xef), and a tail that is not 4 KiB aligned; everything else is holes.
    /// </summary>
    public static async Task<string> SparseRawAsync(TempDirectory dir, string name = "disk.raw", long size = 64 << 20)
    {
        var path = dir.File(name);
        await using (var f = File.Create(path))
        {
            f.SetLength(size);
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 3M 128k", "-c", "write -P 0xef 16M 64k", path);
        return path;
    }
}
