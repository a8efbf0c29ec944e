using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A restart of the daemon with domains running, paused and shut off: a real libvirtd restarted
/// with SIGTERM (its QEMU processes keep running and it reconnects to them) against Tidemark's
/// daemon stopped and started again on its state directory. Stock virsh must print the same
/// before and after the restart, and the same on both.
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

        var real = await RunAsync(new VirshTranscript(libvirtd.Uri), () => libvirtd.RestartAsync(Ct));

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

            var ours = await RunAsync(virsh, async () =>
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
        }
        finally
        {
            await daemon.DisposeAsync();
        }
    }

    /// <summary>r1 resumed, paused and resumed again with a checkpoint, r2 left paused, r3 shut off; the transcript after the restart, which must equal the one before.</summary>
    private static async Task<string> RunAsync(VirshTranscript virsh, Func<Task> restart)
    {
        foreach (string[] command in (string[][])[["resume", "r1"], ["suspend", "r1"], ["resume", "r1"], ["checkpoint-create-as", "r1", "c1"]])
        {
            var result = await virsh.RunAsync(command);
            Assert.True(result.ExitCode == 0, $"virsh {string.Join(' ', command)}: {result.Stderr}");
        }

        var before = await StateAsync(virsh);
        await restart();
        var after = await StateAsync(virsh);
        Assert.Equal(before, after);
        return after;
    }

    private static async Task<string> StateAsync(VirshTranscript virsh)
    {
        var text = new System.Text.StringBuilder();
        foreach (string[] command in (string[][])[["list", "--all"], ["domstate", "r1", "--reason"], ["domstate", "r2", "--reason"], ["domstate", "r3", "--reason"], ["domid", "r2"], ["checkpoint-list", "r1", "--name"], ["checkpoint-info", "r1", "c1"]])
        {
            var result = await virsh.RunAsync(command);
            text.Append("$ virsh ").AppendJoin(' ', command).Append('\n').Append(result.Stdout).Append(result.Stderr);
        }

        return text.ToString();
    }
}
