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

    /// <summary>
    /// The daemon dies holding the image open, its checkpoint's bitmap recording in memory: as
    /// QEMU does, it stores a persistent bitmap in the qcow2 file only when it closes the image,
    /// so the file holds none (qemu-img info lists no bitmap) and the writes since the backup
    /// are known to no one. The restarted host still lists the checkpoint but refuses its
    /// bitmap as missing; the next run makes a full of the disk, says why, and the host keeps
    /// only the new checkpoint; the run after it is an incremental again.
    /// </summary>
    [Fact]
    public async Task DaemonKilledBetweenBackups_NextBackupIsAFullSayingWhy_ThenIncrementalsAgain()
    {
        await using var host = await DaemonHost.StartAsync("cli-kill-daemon");
        await host.GuestWriteAsync("write -P 0x51 0 8M");
        var first = await host.BackupAsync();
        await host.GuestWriteAsync("write -P 0x52 4M 1M");

        await host.KillDaemonAsync();
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", host.Image);
        Assert.DoesNotContain(first.Checkpoint, info, StringComparison.Ordinal);

        // As libvirtd reports a domain whose QEMU died while it was not running.
        await host.RestartDaemonAsync(beforeStart: async () =>
            Assert.Equal("shut off (crashed)\n\n", await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "domstate", "vm", "--reason")));
        await host.GuestWriteAsync("write -P 0x53 12M 1M");
        var second = await host.BackupAsync();

        Assert.Contains($"vda: bitmap broken on the host (checkpoint inconsistent: missing or broken bitmap '{first.Checkpoint}' for disk 'vda'); the writes since that checkpoint are not known (the host stopped without storing its bitmap, or the bitmap was removed): retrying it as a full", second.Output, StringComparison.Ordinal);
        Assert.Matches($"vda: full \\(bitmap broken on the host: [^\n]*{Regex.Escape(first.Checkpoint)}", second.Output);
        Assert.Contains($"deleted checkpoint {first.Checkpoint} from the host", second.Output, StringComparison.Ordinal);
        Assert.Equal(second.Checkpoint + "\n\n", await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "checkpoint-list", "vm", "--name"));

        await host.GuestWriteAsync("write -P 0x54 20M 64k");
        var third = await host.BackupAsync();
        Assert.Contains($"vda: incremental (incremental since checkpoint '{second.Checkpoint}')", third.Output, StringComparison.Ordinal);
        Assert.Contains("vda: 65536 of ", third.Output, StringComparison.Ordinal);
        await host.AssertRestoresAsync(first);
        await host.AssertRestoresAsync(second);
        await host.AssertRestoresAsync(third);
        var verified = await CliRun.RunAsync("verify", "--repo", host.Repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
    }
}
