using System.Text.RegularExpressions;
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
        Peer.Require("virsh");
        using var dir = new TempDirectory("cli-prune");
        var image = dir.File("vm.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "256M");
        var state = dir.File("state");
        var socket = dir.File("sock");
        var uri = $"qemu+unix:///system?socket={socket}";
        var repo = dir.File("repo");
        await using var daemon = await CliProcess.StartAsync("daemon", "--state-dir", state, "--socket", socket);
        await UnixSocketListener.WaitAsync(socket, cancellationToken: Token);
        var xml = dir.File("vm.xml");
        await File.WriteAllTextAsync(xml, DomainDocuments.WithQcow2Disks("vm", [("vda", image)]), Token);
        await Peer.RunCheckedAsync("virsh", "-c", uri, "define", xml);
        await Peer.RunCheckedAsync("virsh", "-c", uri, "start", "vm");
        var guest = $"nbd+unix:///vda?socket={Path.Combine(state, "run", "vm.sock")}";

        // Enough data that folding the third point takes a while: the kill lands mid-copy.
        var checkpoints = new List<string>();
        var captures = new List<string>();
        string[][] writes = [["write -P 0x61 0 96M"], ["write -P 0x62 32M 64M", "write -z 100M 1M"], ["write -P 0x63 64M 96M"]];
        for (var i = 0; i < writes.Length; i++)
        {
            await Peer.RunCheckedAsync("qemu-io", [.. writes[i].SelectMany(c => new[] { "-c", c }), "-c", "flush", "-f", "raw", guest]);
            var run = await CliRun.RunAsync("backup", "run", "vm", "--repo", repo, "-c", uri);
            Assert.True(run.ExitCode == 0, run.Stderr);
            checkpoints.Add(Regex.Match(run.Stdout, "backup (tidemark\\.[0-9a-f]+\\.\\d+) of domain 'vm' complete").Groups[1].Value);
            captures.Add(dir.File($"i{i}.raw"));
            await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", image, captures[^1]);
        }

        var temp = Path.Combine(repo, "vm", "vda", $".{checkpoints[2]}.qcow2.tmp");
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
        for (var i = 0; i < checkpoints.Count; i++)
        {
            if (File.Exists(Path.Combine(repo, "vm", checkpoints[i] + ".json")))
            {
                await AssertRestoresAsync(dir, repo, checkpoints[i], captures[i]);
            }
        }

        var again = await CliRun.RunAsync("backup", "prune", "--repo", repo, "--keep", "1");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains($"finishing the fold of domain 'vm' into {checkpoints[2]} that an interrupted command left", again.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(temp));
        Assert.Equal([$"{checkpoints[2]}.qcow2"], Directory.GetFiles(Path.Combine(repo, "vm", "vda")).Select(Path.GetFileName));
        await AssertRestoresAsync(dir, repo, checkpoints[2], captures[2]);
        var check = await Peer.RunAsync("qemu-img", ["check", Path.Combine(repo, "vm", "vda", checkpoints[2] + ".qcow2")]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        var verified = await CliRun.RunAsync("verify", "--repo", repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
        Assert.StartsWith("verify passed: 1 backup(s), 1 chain file(s)", verified.Stdout, StringComparison.Ordinal);
    }

    private static async Task AssertRestoresAsync(TempDirectory dir, string repo, string checkpoint, string capture)
    {
        var output = dir.File($"r-{checkpoint}-{Guid.NewGuid():N}.raw");
        var restore = await CliRun.RunAsync("restore", "--repo", repo, "--domain", "vm", "--checkpoint", checkpoint, "--output", output);
        Assert.True(restore.ExitCode == 0, restore.Stderr);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", output, capture]);
        Assert.True(compare.ExitCode == 0, $"{checkpoint}: {compare.Stdout}{compare.Stderr}");
        File.Delete(output);
    }
}
