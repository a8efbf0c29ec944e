using Tidemark.Testing;

namespace Tidemark.Daemon.Tests.Support;

/// <summary>Stock virsh against a test daemon.</summary>
internal static class Virsh
{
    public static Task<PeerResult> RunAsync(TestDaemon daemon, params string[] arguments) =>
        Peer.RunAsync("virsh", ["-c", daemon.Uri, .. arguments], timeout: TimeSpan.FromSeconds(60));

    /// <summary>Runs virsh, asserts it succeeded without a word on stderr, returns stdout.</summary>
    public static async Task<string> RunOkAsync(TestDaemon daemon, params string[] arguments)
    {
        var r = await RunAsync(daemon, arguments);
        Assert.True(r.ExitCode == 0, $"virsh {string.Join(' ', arguments)} exited {r.ExitCode}: {r.Stderr}");
        Assert.Equal("", r.Stderr);
        return r.Stdout;
    }
}
