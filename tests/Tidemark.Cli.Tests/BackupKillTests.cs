using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// Real SIGKILLs around <c>backup run</c>, all processes the native programs users run: the
/// client killed while it copies a disk, and the daemon killed between two backups. Each time
/// the next run repairs what was left and every backup restores to what qemu-img captured at it.
/// </summary>
public sealed class BackupKillTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ClientKilledMidCopy_NextRunRepairs_EveryPointRestores()
    {
        await using var host = await DaemonHost.StartAsync("cli-kill-client");
        await host.GuestWriteAsync("write -P 0x41 0 64M");
        var first = await host.BackupAsync();

        await host.GuestWriteAsync("write -P 0x42 32M 128M");
        var repoVda = Path.Combine(host.Repo, "vm", "vda");
        await using (var run = await CliProcess.StartAsync("backup", "run", "vm", "--repo", host.Repo, "-c", host.Uri, "--level", "full"))
        {
            while (!Directory.EnumerateFiles(repoVda, ".*.tmp").Any())
            {
                Assert.False(run.HasExited, "the backup ended before it wrote a chain file");
                await Task.Delay(1, Token);
            }

            Assert.Equal(137, (await run.StopAsync(CliProcess.SIGKILL)).ExitCode);
        }

        Assert.True(File.Exists(Path.Combine(host.Repo, "vm", ".pending.json")), "no pending record after a kill mid-copy");
        var second = await host.BackupAsync();
        Assert.Contains("ended the backup job an interrupted run left on domain 'vm'", second.Output, StringComparison.Ordinal);
        Assert.Matches("deleted checkpoint tidemark\\.[0-9a-f]+\\.\\d+ of an interrupted backup from the host", second.Output);
        Assert.Contains("removed leftover of an interrupted backup: vm/vda/.", second.Output, StringComparison.Ordinal);
        Assert.Equal(second.Checkpoint + "\n\n", await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "checkpoint-list", "vm", "--name"));
        await host.AssertRestoresAsync(first);
        await host.AssertRestoresAsync(second);
        var verified = await CliRun.RunAsync("verify", "--repo", host.Repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
    }

    [Fact]
    public async Task DaemonKilledBetweenBackups_NextBackupRestores()
    {
        await using var host = await DaemonHost.StartAsync("cli-kill-daemon");
        await host.GuestWriteAsync("write -P 0x51 0 8M");
        var first = await host.BackupAsync();
        await host.GuestWriteAsync("write -P 0x52 4M 1M");

        await host.KillAndRestartDaemonAsync();
        await host.GuestWriteAsync("write -P 0x53 12M 1M");
        var second = await host.BackupAsync();

        // The checkpoint's bitmap was in use when the daemon died: an incremental over it could
        // miss writes, so the disk is either continued from a bitmap the host still trusts or
        // backed up in full with the reason.
        Assert.Matches("vda: (incremental \\(incremental since checkpoint|full \\(.+\\))", second.Output);
        await host.AssertRestoresAsync(first);
        await host.AssertRestoresAsync(second);
        var verified = await CliRun.RunAsync("verify", "--repo", host.Repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
    }

    /// <summary>One backup run: its checkpoint, its output, and the disk captured just before it.</summary>
    private sealed record Point(string Checkpoint, string Output, string Capture);

    /// <summary><c>tidemark daemon</c> in its own process with one running domain "vm" of one 256 MiB qcow2 disk.</summary>
    private sealed class DaemonHost : IAsyncDisposable
    {
        private readonly TempDirectory _dir;
        private CliProcess _daemon;
        private int _points;

        private DaemonHost(TempDirectory dir, CliProcess daemon)
        {
            _dir = dir;
            _daemon = daemon;
        }

        public string Repo => _dir.File("repo");

        public string Uri => $"qemu+unix:///system?socket={_dir.File("sock")}";

        private string Image => _dir.File("vm.qcow2");

        public static async Task<DaemonHost> StartAsync(string name)
        {
            Peer.Require("virsh");
            var dir = new TempDirectory(name);
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", dir.File("vm.qcow2"), "256M");
            var host = new DaemonHost(dir, await StartDaemonAsync(dir));
            var xml = dir.File("vm.xml");
            await File.WriteAllTextAsync(xml, DomainDocuments.WithQcow2Disks("vm", [("vda", host.Image)]), Token);
            await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "define", xml);
            await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "start", "vm");
            return host;
        }

        public async Task KillAndRestartDaemonAsync()
        {
            Assert.Equal(137, (await _daemon.StopAsync(CliProcess.SIGKILL)).ExitCode);
            await _daemon.DisposeAsync();
            _daemon = await StartDaemonAsync(_dir);
            await Peer.RunCheckedAsync("virsh", "-c", Uri, "start", "vm");
        }

        public async Task GuestWriteAsync(string command) =>
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", command, "-c", "flush", $"nbd+unix:///vda?socket={Path.Combine(_dir.File("state"), "run", "vm.sock")}");

        public async Task<Point> BackupAsync()
        {
            var capture = _dir.File($"p{_points++}.raw");
            await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", Image, capture);
            var run = await CliRun.RunAsync("backup", "run", "vm", "--repo", Repo, "-c", Uri);
            Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
            var checkpoint = Regex.Match(run.Stdout, "backup (tidemark\\.[0-9a-f]+\\.\\d+) of domain 'vm' complete").Groups[1].Value;
            return new Point(checkpoint, run.Stdout, capture);
        }

        public async Task AssertRestoresAsync(Point point)
        {
            var output = _dir.File($"r-{point.Checkpoint}.raw");
            var restore = await CliRun.RunAsync("restore", "--repo", Repo, "--domain", "vm", "--checkpoint", point.Checkpoint, "--output", output, "--force");
            Assert.True(restore.ExitCode == 0, restore.Stderr);
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", output, point.Capture]);
            Assert.True(compare.ExitCode == 0, $"{point.Checkpoint}: {compare.Stdout}{compare.Stderr}");
        }

        public async ValueTask DisposeAsync()
        {
            await _daemon.DisposeAsync();
            _dir.Dispose();
        }

        private static async Task<CliProcess> StartDaemonAsync(TempDirectory dir)
        {
            var daemon = await CliProcess.StartAsync("daemon", "--state-dir", dir.File("state"), "--socket", dir.File("sock"));
            await UnixSocketListener.WaitAsync(dir.File("sock"), cancellationToken: Token);
            return daemon;
        }
    }
}
