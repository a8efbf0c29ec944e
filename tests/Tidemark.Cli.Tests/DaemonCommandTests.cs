using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>tidemark daemon</c> as a child process, driven by stock virsh and stopped by SIGTERM as a
/// service manager stops libvirtd: the running pull backup is ended and its scratch removed, the
/// domain's image is closed with its checkpoint bitmap stored, the socket and the lock go away.
/// A second daemon on the same state directory is refused while the first runs.
/// </summary>
public sealed class DaemonCommandTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Daemon_ServesVirsh_RefusesASecond_AndStopsCleanlyOnSigterm()
    {
        using var dir = new TempDirectory("cli-daemon");
        var image = dir.File("vm.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "8M");
        var state = dir.File("state");
        var socket = dir.File("sock");
        var uri = $"qemu+unix:///system?socket={socket}";

        await using var daemon = await CliProcess.StartAsync("daemon", "--state-dir", state, "--socket", socket);
        var scratch = dir.File("scratch.qcow2");
        CliRun stopped;
        {
            await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
            var second = await CliRun.RunAsync("daemon", "--state-dir", state, "--socket", dir.File("sock2"));
            Assert.Equal(1, second.ExitCode);
            Assert.StartsWith($"error: another Tidemark daemon (pid {daemon.Id}) is using the state directory '{state}'", second.Stderr, StringComparison.Ordinal);

            var xml = dir.File("vm.xml");
            await File.WriteAllTextAsync(xml, $"<domain type='kvm'><name>vm</name><memory>1048576</memory><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>", Token);
            await Peer.RunCheckedAsync("virsh", "-c", uri, "define", xml);
            await Peer.RunCheckedAsync("virsh", "-c", uri, "start", "vm");
            await Peer.RunCheckedAsync("virsh", "-c", uri, "checkpoint-create-as", "vm", "c1");
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 64k", "-c", "flush", $"nbd+unix:///vda?socket={Path.Combine(state, "run", "vm.sock")}");
            var backup = dir.File("pull.xml");
            await File.WriteAllTextAsync(backup, $"<domainbackup mode='pull'><server transport='unix' socket='{dir.File("pull.sock")}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks></domainbackup>", Token);
            await Peer.RunCheckedAsync("virsh", "-c", uri, "backup-begin", "vm", backup);
            Assert.True(File.Exists(scratch));

            stopped = await daemon.StopAsync(CliProcess.SIGTERM);
        }

        Assert.True(stopped.ExitCode == 0, $"exit {stopped.ExitCode}: {stopped.Stderr}");
        Assert.False(File.Exists(socket));
        Assert.False(File.Exists(Path.Combine(state, "run", "vm.sock")));

        // The pull job is left to the next daemon with the domain, its scratch kept.
        Assert.True(File.Exists(scratch));
        Assert.Equal(["vm.carried"], Directory.GetFiles(Path.Combine(state, "jobs")).Select(Path.GetFileName));
        await using (var next = await CliProcess.StartAsync("daemon", "--state-dir", state, "--socket", socket))
        {
            await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
            Assert.Contains("Operation:        Backup", await Peer.RunCheckedAsync("virsh", "-c", uri, "domjobinfo", "vm"), StringComparison.Ordinal);
            await Peer.RunCheckedAsync("virsh", "-c", uri, "domjobabort", "vm");
            await Peer.RunCheckedAsync("virsh", "-c", uri, "destroy", "vm");
            stopped = await next.StopAsync(CliProcess.SIGTERM);
        }

        Assert.True(stopped.ExitCode == 0, $"exit {stopped.ExitCode}: {stopped.Stderr}");
        Assert.False(File.Exists(scratch));
        Assert.Empty(Directory.GetFiles(Path.Combine(state, "jobs")));

        // QEMU finds the image clean and the checkpoint's bitmap stored, not in use.
        await Peer.RunCheckedAsync("qemu-img", "check", image);
        var info = await Peer.RunCheckedAsync("qemu-img", "info", image);
        Assert.Contains("name: c1", info, StringComparison.Ordinal);
        Assert.DoesNotContain("in-use", info, StringComparison.Ordinal);
    }

    /// <summary>The daemon's keepalive options reach its server: a silent client is dropped after one second at --keepalive-interval 1 --keepalive-count 0, and never with -1.</summary>
    [Theory]
    [InlineData("1", "error 38\n")]
    [InlineData("-1", "True\n")]
    public async Task Daemon_KeepaliveOptions_DropAClientThatStopsAnswering(string interval, string expected)
    {
        Peer.Require("virsh");
        using var dir = new TempDirectory("cli-keepalive");
        var socket = dir.File("sock");
        CliRun stopped;
        await using (var daemon = await CliProcess.StartAsync("daemon", "--state-dir", dir.File("state"), "--socket", socket, "--keepalive-interval", interval, "--keepalive-count", "0"))
        {
            await UnixSocketListener.WaitAsync(socket, cancellationToken: Token);
            var client = await KeepaliveClient.RunAsync($"qemu+unix:///system?socket={socket}", loop: false, TimeSpan.FromSeconds(2.5));
            Assert.True(client.ExitCode == 0, client.Stderr);
            Assert.Equal(expected, client.Stdout);
            stopped = await daemon.StopAsync(CliProcess.SIGTERM);
        }

        Assert.Equal(0, stopped.ExitCode);
        Assert.Equal(interval == "1", (stopped.Stdout + stopped.Stderr).Contains("dropping connection: no response to 0 keepalive messages", StringComparison.Ordinal));
    }
}
