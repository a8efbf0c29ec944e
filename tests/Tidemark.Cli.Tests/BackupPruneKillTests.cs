using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>backup prune</c> SIGKILLed while it writes the new base's standalone file: every backup
/// whose manifest remains still restores to what qemu-img captured at it, and the next prune
/// finishes the fold, says so, and leaves a repository that verify passes and qemu-img check
/// finds clean.
/// </summary>
public sealed class BackupPruneKillTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PruneKilledMidFold_RemainingPointsRestore_NextPruneFinishes()
    {
        await using var host = await DaemonHost.StartAsync("cli-prune");
        var repo = host.Repo;

        // Enough data that folding the third point takes a while: the kill lands mid-copy.
        var points = new List<BackupPoint>();
        string[][] writes = [["write -P 0x61 0 96M"], ["write -P 0x62 32M 64M", "write -z 100M 1M"], ["write -P 0x63 64M 96M"]];
        foreach (var write in writes)
        {
            await host.GuestWriteAsync(write);
            points.Add(await host.BackupAsync());
        }

        var newBase = points[2].Checkpoint;
        var temp = Path.Combine(repo, "vm", "vda", $".{newBase}.qcow2.tmp");
        await using (var prune = await CliProcess.StartAsync("backup", "prune", "--repo", repo, "--keep", "1"))
        {
            while (!File.Exists(temp))
            {
                Assert.False(prune.HasExited, "prune ended before it wrote the new base");
                await Task.Delay(1, Token);
            }

            // 128 + SIGKILL: the process died of the signal, not by itself.
            Assert.Equal(137, (await prune.StopAsync(CliProcess.SIGKILL)).ExitCode);
        }

        Assert.True(File.Exists(Path.Combine(repo, "vm", ".fold.json")), "the pending fold record is gone after a kill mid-copy");
        foreach (var point in points.Where(host.Lists))
        {
            await host.AssertRestoresAsync(point);
        }

        var again = await CliRun.RunAsync("backup", "prune", "--repo", repo, "--keep", "1");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains($"finishing the fold of domain 'vm' into {newBase} that an interrupted command left", again.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(temp));
        Assert.Equal([$"{newBase}.qcow2"], Directory.GetFiles(Path.Combine(repo, "vm", "vda")).Select(Path.GetFileName));
        await host.AssertRestoresAsync(points[2]);
        var check = await Peer.RunAsync("qemu-img", ["check", Path.Combine(repo, "vm", "vda", newBase + ".qcow2")]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        var verified = await CliRun.RunAsync("verify", "--repo", repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
        Assert.StartsWith("verify passed: 1 backup(s), 1 chain file(s)", verified.Stdout, StringComparison.Ordinal);
    }
}
