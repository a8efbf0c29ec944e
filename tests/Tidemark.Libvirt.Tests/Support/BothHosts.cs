using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// What a script does as the guest: a qemu-io command (<c>write -P 0x41 0 1M</c>) on one disk
/// (target dev) of a running domain, done once it returns.
/// </summary>
internal delegate Task GuestWrite(string domain, string target, string command);

/// <summary>
/// One script run against the real libvirtd and then against a fresh Tidemark daemon, each
/// given its connection URI and a directory of its own for images and files.
/// </summary>
internal static class BothHosts
{
    /// <param name="daemonOptions">Changes the daemon's options from the defaults (a TLS directory, say).</param>
    public static Task<(T Real, T Ours)> RunAsync<T>(PrivateLibvirtdFixture fixture, string directoryPrefix, Func<string, string, Task<T>> script, CancellationToken cancellationToken, Func<DaemonOptions, DaemonOptions>? daemonOptions = null)
        => RunAsync(fixture, directoryPrefix, (uri, directory, _) => script(uri, directory), cancellationToken, daemonOptions);

    /// <summary>
    /// As above, with the guest's writes too: on libvirtd through QEMU's block layer
    /// (<see cref="PrivateLibvirtd.GuestWriteAsync"/>), on Tidemark through the domain's NBD
    /// socket, as its guest would write, each followed by a flush.
    /// </summary>
    /// <param name="daemonOptions">Changes the daemon's options from the defaults (a TLS directory, say).</param>
    public static async Task<(T Real, T Ours)> RunAsync<T>(PrivateLibvirtdFixture fixture, string directoryPrefix, Func<string, string, GuestWrite, Task<T>> script, CancellationToken cancellationToken, Func<DaemonOptions, DaemonOptions>? daemonOptions = null)
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory(directoryPrefix);
        var state = tidemarkDir.File("state");
        await using var daemon = new TidemarkDaemon((daemonOptions ?? (o => o))(new DaemonOptions { StateDirectory = state }), NullLoggerFactory.Instance);
        await daemon.StartAsync(cancellationToken);

        var real = await script(libvirtd.Uri, libvirtd.Directory.Path, libvirtd.GuestWriteAsync);
        var ours = await script($"qemu+unix:///system?socket={daemon.SocketPath}", tidemarkDir.Path, async (domain, target, command) =>
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", command, "-c", "flush", $"nbd+unix:///{target}?socket={Path.Combine(state, "run", domain + ".sock")}"));
        return (real, ours);
    }
}
