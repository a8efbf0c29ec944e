namespace Tidemark.Testing;

/// <summary>
/// A small tmpfs mounted over a directory, to make writes into it fail as a real file system
/// does: read-only (EROFS) or full (ENOSPC). Tests run as root (CI does), where file modes stop
/// no write, so a mount is the only honest way. Unmounted (lazily) on dispose.
/// </summary>
public sealed class TmpfsMount : IAsyncDisposable
{
    private const long FullSize = 1 << 20;

    private TmpfsMount(string path)
    {
        Path = path;
    }

    /// <summary>The mount point.</summary>
    public string Path { get; }

    /// <summary>Mounts an empty read-only tmpfs over <paramref name="path"/> (created when missing).</summary>
    public static Task<TmpfsMount> ReadOnlyAsync(string path) => MountAsync(path, "ro,size=1m");

    /// <summary>Mounts an empty tmpfs of <paramref name="bytes"/> over <paramref name="path"/> (created when missing): the file system to fill.</summary>
    public static Task<TmpfsMount> SmallAsync(string path, long bytes) => MountAsync(path, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"size={bytes}"));

    /// <summary>Mounts a 1 MiB tmpfs over <paramref name="path"/> and fills it: creating a file still works, writing any byte fails.</summary>
    public static async Task<TmpfsMount> FullAsync(string path)
    {
        var mount = await MountAsync(path, $"size={FullSize}").ConfigureAwait(false);
        try
        {
            var filler = new byte[64 << 10];
            var stream = new FileStream(System.IO.Path.Combine(path, ".filler"), FileMode.CreateNew, FileAccess.Write);
            await using (stream.ConfigureAwait(false))
            {
                try
                {
                    for (long written = 0; written <= FullSize; written += filler.Length)
                    {
                        await stream.WriteAsync(filler).ConfigureAwait(false);
                        await stream.FlushAsync().ConfigureAwait(false);
                    }
                }
                catch (IOException)
                {
                    // No space left: full, as wanted.
                }
            }

            return mount;
        }
        catch
        {
            await mount.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Peer.RunAsync("umount", ["-l", Path]).ConfigureAwait(false);

    private static async Task<TmpfsMount> MountAsync(string path, string options)
    {
        if (Environment.UserName != "root" && !Peer.InCi)
        {
            Assert.Skip("mounting a tmpfs to make writes fail needs root (CI runs as root)");
        }

        Directory.CreateDirectory(path);
        await Peer.RunCheckedAsync("mount", "-t", "tmpfs", "-o", options, "tidemark-test", path).ConfigureAwait(false);
        return new TmpfsMount(path);
    }
}
