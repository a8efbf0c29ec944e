namespace Tidemark.Testing;

/// <summary>
/// Runs <c>virtnbdrestore</c>. It writes each disk through a <c>qemu-nbd --fork</c> it ends
/// with SIGTERM and does not wait for (virtnbdbackup 1.9.15, common.killProc): on a busy host
/// that qemu-nbd still holds its image's lock when virtnbdrestore has exited, and a
/// <c>qemu-img compare</c> right after fails with 'Failed to get shared "write" lock'. So this
/// returns only once every image in the output directory can be opened by another process.
/// </summary>
public static class VirtNbdRestore
{
    private static readonly TimeSpan LockRelease = TimeSpan.FromSeconds(60);

    /// <param name="arguments">virtnbdrestore's arguments; <paramref name="output"/> must be the one given to -o.</param>
    public static async Task<PeerResult> RunAsync(string output, IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        var result = await Peer.RunAsync("virtnbdrestore", arguments, timeout: timeout ?? TimeSpan.FromMinutes(3));
        if (!Directory.Exists(output))
        {
            return result;
        }

        var deadline = DateTime.UtcNow + LockRelease;
        foreach (var image in Directory.GetFiles(output).Where(f => !f.EndsWith(".xml", StringComparison.Ordinal) && !f.EndsWith(".config", StringComparison.Ordinal)))
        {
            while (true)
            {
                var info = await Peer.RunAsync("qemu-img", ["info", image]);
                if (!info.Stderr.Contains("lock", StringComparison.Ordinal))
                {
                    break;
                }

                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"{image} was still locked {LockRelease.TotalSeconds} s after virtnbdrestore exited: {info.Stderr}");
                }

                await Task.Delay(50);
            }
        }

        return result;
    }
}
