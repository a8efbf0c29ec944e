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
}
