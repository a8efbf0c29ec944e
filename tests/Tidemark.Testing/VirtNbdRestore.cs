namespace Tidemark.Testing;

/// <summary>
/// virtnbdrestore, run to completion and then until the images it wrote are closed: only then
/// may another program open or read them.
/// </summary>
/// <remarks>
/// virtnbdrestore writes each disk through a local <c>qemu-nbd --fork</c> (no <c>-t</c>): it
/// sends NBD_CMD_DISC and exits without waiting for that server, which then flushes the qcow2
/// caches, closes the image, drops its locks and exits on its own. On a busy host that
/// takes a moment after virtnbdrestore's exit, and a <c>qemu-img compare</c> started at once
/// is refused ("Failed to get shared "write" lock"); read without the lock (<c>-U</c>) it could
/// see metadata qemu-nbd has not written yet. The image is ready once no process has it open.
/// </remarks>
public static class VirtNbdRestore
{
    /// <summary>How long a qemu-nbd left by virtnbdrestore may take to close its image.</summary>
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Runs virtnbdrestore with <paramref name="arguments"/>; when it succeeds, waits until no
    /// process has open any image it wrote into <paramref name="output"/>.
    /// </summary>
    public static async Task<PeerResult> RunAsync(IEnumerable<string> arguments, string output, TimeSpan timeout)
    {
        var result = await Peer.RunAsync("virtnbdrestore", arguments, timeout: timeout).ConfigureAwait(false);
        if (result.ExitCode == 0 && Directory.Exists(output))
        {
            foreach (var image in Images(output))
            {
                await WaitUntilClosedAsync(image).ConfigureAwait(false);
            }
        }

        return result;
    }

    /// <summary>The disk images a restore wrote into <paramref name="output"/> (not the domain XML or config copies).</summary>
    public static IEnumerable<string> Images(string output) =>
        Directory.GetFiles(output).Where(f => !f.EndsWith(".xml", StringComparison.Ordinal) && !f.EndsWith(".config", StringComparison.Ordinal));

    /// <summary>
    /// Waits until no process has <paramref name="image"/> open (every <c>/proc/PID/fd</c> is
    /// looked at); fails the test when one still does after <see cref="CloseTimeout"/> (a server
    /// left running, not one closing). qemu drops its image locks one permission at a time as
    /// it closes, so a lock probe can pass while a later reader is still refused.
    /// </summary>
    public static async Task WaitUntilClosedAsync(string image)
    {
        var path = Path.GetFullPath(image);
        var deadline = DateTime.UtcNow + CloseTimeout;
        while (Holder(path) is { } holder)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{path} is still open in {holder} {CloseTimeout.TotalSeconds} s after virtnbdrestore exited");
            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    /// <summary>A process that has <paramref name="path"/> open (its pid and command line), or null.</summary>
    private static string? Holder(string path)
    {
        foreach (var process in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(process), out _))
            {
                continue;
            }

            try
            {
                foreach (var fd in Directory.EnumerateFileSystemEntries(Path.Combine(process, "fd")))
                {
                    if (new FileInfo(fd).LinkTarget == path)
                    {
                        var command = File.ReadAllText(Path.Combine(process, "cmdline")).Replace('\0', ' ').Trim();
                        return $"process {Path.GetFileName(process)} ({command})";
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process ended while it was looked at, or it is not ours to look into.
            }
        }

        return null;
    }
}
