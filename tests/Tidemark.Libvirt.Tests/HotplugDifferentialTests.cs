using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Disk hotplug through stock virsh on the real libvirtd and on Tidemark's daemon:
/// <c>attach-disk</c> to the running domain (then written through, checkpointed and measured
/// with <c>--size</c>), to the persistent definition and to both; <c>detach-disk</c> from the
/// persistent definition; and every refusal on the way (a target taken, in the running domain
/// and in the definition; an image missing; an image already open; a domain shut off; a disk
/// that does not exist; an incremental backup from a checkpoint older than the disk). Detaching
/// from the running domain is left out: QEMU waits for the guest to release the PCI device,
/// which a guest without an operating system never does. The transcripts must be equal.
/// </summary>
public sealed partial class HotplugDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AttachAndDetachDisks_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdh", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh attach-disk hp DIR/hp/c1.qcow2 vdc --subdriver qcow2 --targetbus virtio --alias ua-vdc\nDisk attached successfully\n", real, StringComparison.Ordinal);
        Assert.Contains("error: XML error: target 'vdc' duplicated for disk sources 'DIR/hp/c1.qcow2' and 'DIR/hp/c2.qcow2'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unable to execute QEMU command 'blockdev-add': Failed to get \"write\" lock\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdc' checkpoint='bitmap' bitmap='k2' size='131072'/>", real, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'k1' for disk 'vdc'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: target vda already exists\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "hp");
        Directory.CreateDirectory(images);
        var disks = new List<LibvirtdDisk>();
        foreach (var name in new[] { "vda", "c1", "c2", "c3" })
        {
            var image = Path.Combine(images, name + ".qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
            disks.Add(new LibvirtdDisk(name, image));
        }

        var xml = Path.Combine(images, "hp.xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain("hp", disks.Take(1).ToList(), Hotplug: true).Xml(), Ct);
        await File.WriteAllTextAsync(Path.Combine(images, "inc.xml"), $"<domainbackup mode='pull'><incremental>k1</incremental><server transport='unix' socket='{Path.Combine(images, "pull.sock")}'/></domainbackup>", Ct);
        string Image(string name) => Path.Combine(images, name + ".qcow2");

        foreach (string[] command in (string[][])[
            ["define", xml], ["start", "hp"], ["checkpoint-create-as", "hp", "k1"],
            ["attach-disk", "hp", Image("c1"), "vdc", "--subdriver", "qcow2", "--targetbus", "virtio", "--alias", "ua-vdc"],
            ["attach-disk", "hp", Image("c2"), "vdc", "--subdriver", "qcow2", "--targetbus", "virtio"],
            ["attach-disk", "hp", Image("nosuch"), "vdd", "--subdriver", "qcow2", "--targetbus", "virtio"],
            ["attach-disk", "hp", Image("c1"), "vdd", "--subdriver", "qcow2", "--targetbus", "virtio"],
            ["domblklist", "hp"], ["domblklist", "hp", "--inactive"],
        ])
        {
            await virsh.RunAsync(command);
        }

        await write("hp", "vdc", "write -P 0x41 0 64k");
        foreach (string[] command in (string[][])[
            ["checkpoint-create-as", "hp", "k2"],
        ])
        {
            await virsh.RunAsync(command);
        }

        await write("hp", "vdc", "write -P 0x42 1M 128k");
        foreach (string[] command in (string[][])[
            ["checkpoint-dumpxml", "hp", "k2", "--no-domain", "--size"],
            ["backup-begin", "hp", Path.Combine(images, "inc.xml")],
            ["detach-disk", "hp", "vdz"],
            ["attach-disk", "hp", Image("c3"), "vde", "--subdriver", "qcow2", "--persistent"],
            ["domblklist", "hp"], ["domblklist", "hp", "--inactive"],
            ["detach-disk", "hp", "vde", "--config"], ["domblklist", "hp", "--inactive"],
            ["attach-disk", "hp", Image("c3"), "vda", "--subdriver", "qcow2", "--config"],
            ["destroy", "hp"],
            ["attach-disk", "hp", Image("c3"), "vdf", "--subdriver", "qcow2"],
            ["attach-disk", "hp", Image("c3"), "vdf", "--subdriver", "qcow2", "--config"],
            ["domblklist", "hp"],
            ["detach-disk", "hp", "vdf"],
            ["detach-disk", "hp", "vdf", "--config"],
            ["domblklist", "hp"],
            ["undefine", "hp", "--checkpoints-metadata"],
        ])
        {
            await virsh.RunAsync(command);
        }

        return virsh.Mask(directory);
    }

    /// <summary>
    /// <c>virsh blockresize</c>: a running qcow2 disk grown, then shrunk, each confirmed by
    /// <c>domblkinfo</c>'s capacity (the allocation and physical size are each host's own and
    /// masked), and the refusals: a disk the domain lacks, a domain shut off. Then a checkpoint's
    /// <c>--size</c> counts a write past the old end, on both.
    /// </summary>
    [Fact]
    public async Task BlockResize_PrintsTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdz", RunResizeAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh blockresize rz vda 32M\nBlock device 'vda' is resized\n", real, StringComparison.Ordinal);
        Assert.Contains("Capacity:       33554432\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='k1' size='65536'/>", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunResizeAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        await virsh.RunAsync("define", await TwoDiskDomain.CreateAsync(directory, "rz"));
        await virsh.RunAsync("start", "rz");
        await virsh.RunAsync("checkpoint-create-as", "rz", "k1");
        foreach (string[] command in (string[][])[
            ["blockresize", "rz", "vda", "32M"], ["domblkinfo", "rz", "vda"],
            ["blockresize", "rz", Path.Combine(directory, "rz", "vdb.qcow2"), "20000K"], ["domblkinfo", "rz", "vdb"],
            ["blockresize", "rz", "vdz", "32M"],
        ])
        {
            await virsh.RunAsync(command);
        }

        await write("rz", "vda", "write -P 0x51 30M 64k");
        await virsh.RunAsync("checkpoint-dumpxml", "rz", "k1", "--no-domain", "--size");
        await virsh.RunAsync("blockresize", "rz", "vdb", "8M");
        await virsh.RunAsync("domblkinfo", "rz", "vdb");
        await virsh.RunAsync("destroy", "rz");
        await virsh.RunAsync("blockresize", "rz", "vda", "64M");
        await virsh.RunAsync("undefine", "rz", "--checkpoints-metadata");
        return HostSizes().Replace(virsh.Mask(directory), "");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^(Allocation|Physical): +\d+\n", System.Text.RegularExpressions.RegexOptions.Multiline)]
    private static partial System.Text.RegularExpressions.Regex HostSizes();
}
