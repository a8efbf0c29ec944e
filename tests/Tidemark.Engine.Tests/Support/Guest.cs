using System.Net.Sockets;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>qemu-io as the guest: runs commands against a running domain's disk over NBD.</summary>
public static class Guest
{
    public static string Uri(string socket, string target) => $"nbd+unix:///{target}?socket={socket}";

    /// <summary>An in-process NBD guest of the disk, for tests that need many requests quickly.</summary>
    public static Task<NbdClient> ConnectAsync(string socket, string target, CancellationToken cancellationToken)
        => NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = target }, cancellationToken);

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
