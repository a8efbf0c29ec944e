using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A restart of the daemon with domains running, paused and shut off: a real libvirtd restarted
/// with SIGTERM (its QEMU processes keep running and it reconnects to them) against Tidemark's
/// daemon stopped and started again on its state directory. Stock virsh must print the same
/// before and after the restart, and the same on both. A pull backup of r1 runs across the
/// restart: libvirtd finds QEMU's job again, Tidemark's next daemon takes its job up; both serve
/// the export on the same socket afterwards, and both end the job at the abort.
/// </summary>
public sealed class DaemonRestartDifferentialTests
{
    // Started paused in this order (ids 1 and 2), or only defined.
    private static readonly (string Name, bool Start)[] Domains = [("r1", true), ("r2", true), ("r3", false)];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RunningPausedAndShutOffDomains_ReadTheSameAfterARestart_OnBoth()
    {
        // A libvirtd of its own: the ids it hands out start at 1, as the new daemon's do.
        await using var libvirtd = await PrivateLibvirtd.StartAsync(Ct);
        foreach (var (name, start) in Domains)
        {
            await libvirtd.DefineDomainAsync(name, start: start);
        }

        var real = await RunAsync(new VirshTranscript(libvirtd.Uri), libvirtd.Directory, () => libvirtd.RestartAsync(Ct));

        using var directory = new TempDirectory("tdr");
        var options = new DaemonOptions { StateDirectory = directory.File("state") };
        var daemon = new TidemarkDaemon(options, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);
        try
        {
            var virsh = new VirshTranscript($"qemu+unix:///system?socket={daemon.SocketPath}");
            foreach (var (name, start) in Domains)
            {
                var image = directory.File($"{name}-vda.qcow2");
                await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
                var xml = directory.File(name + ".xml");
                await File.WriteAllTextAsync(xml, DomainDocuments.WithQcow2Disks(name, [("vda", image)]), Ct);
                Assert.Equal(0, (await virsh.RunAsync("define", xml)).ExitCode);
                if (start)
                {
                    Assert.Equal(0, (await virsh.RunAsync("start", name, "--paused")).ExitCode);
                }
            }

            var ours = await RunAsync(virsh, directory, async () =>
            {
                await daemon.DisposeAsync();
                daemon = new TidemarkDaemon(options, NullLoggerFactory.Instance);
                await daemon.StartAsync(Ct);
            });

            Assert.Equal(real, ours);
            Assert.Contains(" 1    r1     running\n 2    r2     paused\n -    r3     shut off\n", real, StringComparison.Ordinal);
            Assert.Contains("$ virsh domstate r1 --reason\nrunning (unpaused)\n", real, StringComparison.Ordinal);
            Assert.Contains("$ virsh domstate r2 --reason\npaused (user)\n", real, StringComparison.Ordinal);
            Assert.Contains("$ virsh checkpoint-info r1 c1\nName:           c1\nDomain:         r1\n", real, StringComparison.Ordinal);
            Assert.Contains("$ virsh domjobinfo r1\nJob type:         Unbounded   \nOperation:        Backup      \n", real, StringComparison.Ordinal);
            Assert.EndsWith("$ nbdinfo --size\n16777216\n$ virsh domjobinfo r1 --completed\nJob type:         Completed   \nOperation:        Backup      \nscratch removed: True\n", real, StringComparison.Ordinal);
        }
        finally
        {
            await daemon.DisposeAsync();
        }
    }

    /// <summary>
    /// r1 resumed, paused and resumed again with a checkpoint and a pull backup begun, r2 left
    /// paused, r3 shut off; the transcript after the restart, which must equal the one before,
    /// then the export's size and the job's end.
    /// </summary>
    private static async Task<string> RunAsync(VirshTranscript virsh, TempDirectory work, Func<Task> restart)
    {
        var socket = work.File("pull.sock");
        var scratch = work.File("r1-scratch.qcow2");
        var pull = work.File("pull.xml");
        await File.WriteAllTextAsync(pull, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks></domainbackup>", Ct);
        foreach (string[] command in (string[][])[["resume", "r1"], ["suspend", "r1"], ["resume", "r1"], ["checkpoint-create-as", "r1", "c1"], ["backup-begin", "r1", pull]])
        {
            var result = await virsh.RunAsync(command);
            Assert.True(result.ExitCode == 0, $"virsh {string.Join(' ', command)}: {result.Stderr}");
        }

        var before = await StateAsync(virsh);
        await restart();
        var after = await StateAsync(virsh);
        Assert.Equal(before, after);

        var size = await Peer.RunCheckedAsync("nbdinfo", "--size", $"nbd+unix:///vda?socket={socket}");
        Assert.Equal(0, (await virsh.RunAsync("domjobabort", "r1")).ExitCode);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline && !(await virsh.RunAsync("domjobinfo", "r1")).Stdout.Contains("None", StringComparison.Ordinal))
        {
            await Task.Delay(50, Ct);
        }

        var completed = await virsh.RunAsync("domjobinfo", "r1", "--completed");
        return after + "$ nbdinfo --size\n" + size + "$ virsh domjobinfo r1 --completed\n" + JobHead(completed.Stdout) + $"scratch removed: {!File.Exists(scratch)}\n";
    }

    /// <summary>The job's type and operation: the first two lines of <c>virsh domjobinfo</c> (the rest are times and sizes).</summary>
    private static string JobHead(string info) => string.Concat(info.Split('\n').Take(2).Select(l => l + "\n"));

    private static async Task<string> StateAsync(VirshTranscript virsh)
    {
        var text = new System.Text.StringBuilder();
        foreach (string[] command in (string[][])[["list", "--all"], ["domstate", "r1", "--reason"], ["domstate", "r2", "--reason"], ["domstate", "r3", "--reason"], ["domid", "r2"], ["checkpoint-list", "r1", "--name"], ["checkpoint-info", "r1", "c1"]])
        {
            var result = await virsh.RunAsync(command);
            text.Append("$ virsh ").AppendJoin(' ', command).Append('\n').Append(result.Stdout).Append(result.Stderr);
        }

        text.Append("$ virsh domjobinfo r1\n").Append(JobHead((await virsh.RunAsync("domjobinfo", "r1")).Stdout));

        return text.ToString();
    }
}
