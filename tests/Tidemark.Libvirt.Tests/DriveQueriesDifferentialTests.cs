using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Queries and changes of a domain's drives through stock virsh on the real libvirtd and on
/// Tidemark's daemon: a qcow2 disk, a CD-ROM with media (then ejected), one without, a floppy.
/// <c>domblkinfo</c> shut off and running (allocation is what the file system holds, physical
/// the file's length; a drive without media refused), <c>domblkstat</c> of an empty drive,
/// <c>domstats --block</c> (node indexes, an empty drive's counters, a running disk's highest
/// write and held bytes), <c>blockresize</c> of an empty drive and of a floppy (which QEMU's
/// device refuses), a checkpoint leaving the drives out, media changed on the floppy, and a
/// live detach of a CD-ROM (refused). The transcripts must be equal.
/// </summary>
public sealed class DriveQueriesDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DriveQueries_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdq", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains(" vda      16777216   200704       196616\n", real, StringComparison.Ordinal);
        Assert.Contains("error: invalid argument: disk 'hdc' does not currently have a source assigned\n", real, StringComparison.Ordinal);
        Assert.Contains("  block.1.name=hdc\n  block.1.backingIndex=5\n", real, StringComparison.Ordinal);
        Assert.Contains("  block.0.allocation=0\n  block.0.capacity=16777216\n  block.0.physical=200704\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Operation not supported: can't resize empty or readonly disk 'hdc'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Operation not supported: disk device type 'cdrom' cannot be detached\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "dq");
        Directory.CreateDirectory(images);
        string I(string n) => Path.Combine(images, n);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("vda.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("cd1.iso"), "4M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("fd.img"), "1440K");
        var xml = I("dq.xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>dq</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <features><acpi/></features>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("vda.qcow2")}'/><target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("cd1.iso")}'/><target dev='hdc' bus='ide'/><readonly/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdd' bus='ide'/><readonly/></disk>
                <disk type='file' device='floppy'><driver name='qemu' type='raw'/><source file='{I("fd.img")}'/><target dev='fda' bus='fdc'/></disk>
              </devices>
            </domain>
            """, Ct);
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("domblklist", "dq", "--details");
        await virsh.RunAsync("domblkinfo", "dq", "--all");
        // Paused: a booting guest's firmware reads the drives and locks the trays in its own
        // time, which makes libvirtd's answers a race (Tidemark has no firmware).
        await virsh.RunAsync("start", "dq", "--paused");
        await virsh.RunAsync("change-media", "dq", "hdc", "--eject");
        await virsh.RunAsync("domblklist", "dq", "--details");
        await virsh.RunAsync("domblkinfo", "dq", "hdc");
        await virsh.RunAsync("domblkinfo", "dq", "hdd");
        await virsh.RunAsync("domblkinfo", "dq", "fda");
        await virsh.RunAsync("domblkinfo", "dq", "--all");
        await virsh.RunAsync("domblkstat", "dq", "hdc");
        await virsh.RunAsync("domblkstat", "dq", "fda");
        await virsh.RunAsync("domstats", "dq", "--block");
        await virsh.RunAsync("blockresize", "dq", "hdc", "8M");
        await virsh.RunAsync("blockresize", "dq", "fda", "2M");
        await virsh.RunAsync("checkpoint-create-as", "dq", "k1");
        await virsh.RunAsync("checkpoint-dumpxml", "dq", "k1", "--no-domain");
        await virsh.RunAsync("change-media", "dq", "fda", "--eject");
        await virsh.RunAsync("change-media", "dq", "fda", I("cd1.iso"), "--insert");
        await virsh.RunAsync("domblklist", "dq");
        await virsh.RunAsync("detach-disk", "dq", "hdd");
        await virsh.RunAsync("domblklist", "dq");
        await virsh.RunAsync("destroy", "dq");
        await virsh.RunAsync("checkpoint-delete", "dq", "k1", "--metadata");
        await virsh.RunAsync("undefine", "dq");
        return virsh.Mask(directory);
    }
}
