using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// One script run against the real libvirtd and then against a fresh Tidemark daemon, each
/// given its connection URI and a directory of its own for images and files.
/// </summary>
internal static class BothHosts
{
    /// <param name="daemonOptions">Changes the daemon's options from the defaults (a TLS directory, say).</param>
    public static async Task<(T Real, T Ours)> RunAsync<T>(PrivateLibvirtdFixture fixture, string directoryPrefix, Func<string, string, Task<T>> script, CancellationToken cancellationToken, Func<DaemonOptions, DaemonOptions>? daemonOptions = null)
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory(directoryPrefix);
        await using var daemon = new TidemarkDaemon((daemonOptions ?? (o => o))(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }), NullLoggerFactory.Instance);
        await daemon.StartAsync(cancellationToken);

        var real = await script(libvirtd.Uri, libvirtd.Directory.Path);
        var ours = await script($"qemu+unix:///system?socket={daemon.SocketPath}", tidemarkDir.Path);
        return (real, ours);
    }
}
