using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// A pull backup whose <c>&lt;server socket=…/&gt;</c> names a file that is not a stale
/// socket, begun by stock virsh against the daemon (which runs as root): the domain's disk
/// image, the daemon's own control socket, the domain's guest socket. QEMU would unlink the
/// path before binding; the daemon refuses, and nothing is lost.
/// </summary>
public sealed class PullSocketPathTests
{
    [Fact]
    public async Task Virsh_PullSocketOnAnImageOrALiveSocket_IsRefused_AndEverythingKeepsWorking()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("vm", "write -P 0x61 0 2M");
        var before = await test.CaptureAsync(image, "before.raw");
        var scratch = test.Directory.File("scratch.qcow2");

        foreach (var (path, why) in new[]
        {
            (image, "exists and is not a socket: refusing to replace it with one"),
            (test.Daemon.SocketPath, "is the socket of a server that is still listening"),
            (test.GuestSocket("vm"), "is the socket of a server that is still listening"),
        })
        {
            var pull = test.Directory.File("pull.xml");
            await File.WriteAllTextAsync(pull, $"<domainbackup mode='pull'><server transport='unix' socket='{path}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks></domainbackup>", TestDaemon.Ct);

            var refused = await Virsh.RunAsync(test, "backup-begin", "vm", pull);

            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains($"error: operation failed: cannot start the backup NBD server on unix socket '{path}': '{path}' {why}", refused.Stderr, StringComparison.Ordinal);
            Assert.False(File.Exists(scratch));
        }

        // The image is whole, the guest and the daemon still answer, and a job can begin.
        await test.GuestWriteAsync("vm", "vda", "write -P 0x62 2M 1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x62 2M 1M", before);
        var after = await test.CaptureAsync(image, "after.raw");
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", before, after]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        Assert.Contains("running", await Virsh.RunOkAsync(test, "domstate", "vm"), StringComparison.Ordinal);
    }
}
