namespace Tidemark.Testing;

/// <summary>
/// A loop device over a file of its own: a real block device (fstat says S_IFBLK, its size comes
/// from the BLKGETSIZE64 ioctl, it can be neither grown nor shrunk, and it holds what was written
/// to it before), as a logical volume or a partition is to QEMU's host_device driver. Filled
/// with a non-zero pattern first, so that anything an image reads without having written it
/// shows. Needs root (CI runs as root); detached and its file deleted on dispose.
/// </summary>
public sealed class LoopDevice : IAsyncDisposable
{
    /// <summary>What the device holds before a test writes to it.</summary>
    public const byte Garbage = 0xa5;

    private readonly string _backing;

    private LoopDevice(string path, string backing, long size)
    {
        Path = path;
        _backing = backing;
        Size = size;
    }

    /// <summary>The device node, /dev/loopN.</summary>
    public string Path { get; }

    /// <summary>The device's size in bytes.</summary>
    public long Size { get; }

    /// <summary>Attaches a new loop device of <paramref name="size"/> bytes (whole MiB) over a file in <paramref name="directory"/>.</summary>
    public static async Task<LoopDevice> AttachAsync(string directory, long size)
    {
        if (Environment.UserName != "root" && !Peer.InCi)
        {
            Assert.Skip("attaching a loop device needs root (CI runs as root)");
        }

        var backing = System.IO.Path.Combine(directory, $"loop-{Guid.NewGuid():N}.img");
        var chunk = new byte[1 << 20];
        Array.Fill(chunk, Garbage);
        var stream = new FileStream(backing, FileMode.CreateNew, FileAccess.Write);
        await using (stream.ConfigureAwait(false))
        {
            for (long written = 0; written < size; written += chunk.Length)
            {
                await stream.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, size - written))).ConfigureAwait(false);
            }
        }

        var path = (await Peer.RunCheckedAsync("losetup", "--find", "--show", backing).ConfigureAwait(false)).Trim();
        return new LoopDevice(path, backing, size);
    }

    public async ValueTask DisposeAsync()
    {
        await Peer.RunAsync("losetup", ["-d", Path]).ConfigureAwait(false);
        File.Delete(_backing);
    }
}
