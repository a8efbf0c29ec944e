using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>qemu-io as the guest: runs commands against a running domain's disk over NBD.</summary>
public static class Guest
{
    public static string Uri(string socket, string target) => $"nbd+unix:///{target}?socket={socket}";

    /// <summary>Runs each qemu-io command (e.g. "write -P 0x61 0 64k") against the disk, then flushes; fails the test on error.</summary>
    public static async Task<string> RunAsync(string socket, string target, params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands.Append("flush"))
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add(Uri(socket, target));
        var result = await Peer.RunAsync("qemu-io", args);
        result.EnsureSuccess();
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
        return result.Stdout;
    }
}
