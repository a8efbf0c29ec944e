using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Stock virsh runs one command sequence against the real libvirtd and against Tidemark's
/// daemon, each with an equivalent domain; the transcripts must be equal once what must differ
/// between two hosts (paths, UUIDs, times, ids) is masked.
/// </summary>
public sealed class VirshDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DomainAndCheckpointCommands_PrintTheSameOnBoth()
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tdv");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);

        // The same domain document on both, images in each host's own directory.
        var real = await RunAsync(new VirshTranscript(libvirtd.Uri), libvirtd.Directory.Path, async (disk) =>
            await libvirtd.GuestWriteAsync("dv", disk, "write -P 0x41 0 1M"));
        var ours = await RunAsync(new VirshTranscript($"qemu+unix:///system?socket={daemon.SocketPath}"), tidemarkDir.Path, async (disk) =>
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 1M", "-c", "flush", $"nbd+unix:///{disk}?socket={Path.Combine(tidemarkDir.File("state"), "run", "dv.sock")}"));

        // Equal, and what both say is what libvirt says of this state.
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh domstate dv --reason\nshut off (destroyed)\n", real, StringComparison.Ordinal);
        Assert.Contains("OS Type:        hvm\nState:          running\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='1048576'/>", real, StringComparison.Ordinal);
        Assert.Contains("c1\n  |\n  +- c3\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(VirshTranscript virsh, string directory, Func<string, Task> guestWrite)
    {
        var images = Path.Combine(directory, "dv");
        Directory.CreateDirectory(images);
        var disks = new List<LibvirtdDisk>();
        foreach (var target in new[] { "vda", "vdb" })
        {
            var image = Path.Combine(images, target + ".qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
            disks.Add(new LibvirtdDisk(target, image));
        }

        var xml = Path.Combine(images, "dv.xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain("dv", disks).Xml(), Ct);

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("dominfo", "dv");
        await virsh.RunAsync("start", "dv");
        await virsh.RunAsync("domstate", "dv");
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("dominfo", "dv");
        await virsh.RunAsync("domblklist", "dv");
        await virsh.RunAsync("domblklist", "dv", "--details");
        await virsh.RunAsync("list", "--all");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c1", "first");
        await guestWrite("vda");
        await virsh.RunAsync("checkpoint-create-as", "dv", "--name", "c2", "--diskspec", "vda", "--diskspec", "vdb,checkpoint=no");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c3");
        await virsh.RunAsync("checkpoint-list", "dv");
        await virsh.RunAsync("checkpoint-list", "dv", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--parent");
        await virsh.RunAsync("checkpoint-list", "dv", "--tree");
        await virsh.RunAsync("checkpoint-list", "dv", "--roots");
        await virsh.RunAsync("checkpoint-list", "dv", "--leaves", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--no-leaves", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--topological", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--from", "c1", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--from", "c1", "--descendants", "--name");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c1", "--no-domain");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c1", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c2", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-info", "dv", "c1");
        await virsh.RunAsync("checkpoint-info", "dv", "c2");
        await virsh.RunAsync("checkpoint-parent", "dv", "c2");
        await virsh.RunAsync("checkpoint-parent", "dv", "c1");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c1");
        await virsh.RunAsync("checkpoint-delete", "dv", "c2");
        await virsh.RunAsync("checkpoint-list", "dv", "--tree");
        await virsh.RunAsync("checkpoint-delete", "dv", "c1", "--children");
        await virsh.RunAsync("checkpoint-list", "dv", "--name");
        await virsh.RunAsync("checkpoint-info", "dv", "c1");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c9");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c4");
        await virsh.RunAsync("destroy", "dv");
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("undefine", "dv");
        await virsh.RunAsync("undefine", "dv", "--checkpoints-metadata");
        await virsh.RunAsync("domstate", "dv");
        return virsh.Mask(directory);
    }
}
