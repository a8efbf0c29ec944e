using System.Xml.Linq;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A domain's disks in <c>virsh dumpxml</c> on the real libvirtd and on Tidemark's daemon:
/// live, with node indexes and backing chains (a three-layer chain, a raw disk, a CD-ROM with
/// media and one without, a SCSI disk), after a two-layer chain is hot-plugged, a drive ejected
/// and media inserted; the live XML defined under another name (the indexes, the ejected
/// drive's empty source and the domain's id go, the chain stays); and the defaults libvirt
/// fills into a disk it is given (device, driver name and format, bus, a CD-ROM's readonly).
/// The disks must be equal, but for the guest addresses libvirtd gives them and Tidemark, with
/// no guest machine, does not.
/// </summary>
public sealed class LiveXmlDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DisksOfTheLiveXml_AreTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tlx", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("<source file='DIR/lx/top.qcow2' index='5'/>\n      <backingStore type='file' index='6'>\n        <format type='qcow2'/>\n        <source file='DIR/lx/mid.qcow2'/>", real, StringComparison.Ordinal);
        Assert.Contains("<source file='DIR/lx/ctop.qcow2' index='9'/>", real, StringComparison.Ordinal);
        Assert.Contains("<source index='11'/>", real, StringComparison.Ordinal);
        Assert.Contains("<domain type='qemu' id='", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "lx");
        Directory.CreateDirectory(images);
        string I(string name) => Path.Combine(images, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("base.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("base.qcow2"), "-F", "qcow2", I("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("mid.qcow2"), "-F", "qcow2", I("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("cbase.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("cbase.qcow2"), "-F", "qcow2", I("ctop.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("sda.qcow2"), "16M");
        foreach (var raw in new[] { "vdb.raw", "cd1.iso", "cd2.iso" })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I(raw), "4M");
        }

        var xml = I("lx.xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>lx</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <features><acpi/></features>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("top.qcow2")}'/><target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{I("vdb.raw")}'/><target dev='vdb' bus='virtio'/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("cd1.iso")}'/><target dev='hdc' bus='ide'/><readonly/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdd' bus='ide'/><readonly/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("sda.qcow2")}'/><target dev='sda' bus='scsi'/></disk>
              </devices>
            </domain>
            """, Ct);

        // Disks as the document gives them, in the order libvirtd keeps.
        await File.WriteAllTextAsync(I("bare.xml"), $"""
            <domain type='qemu'>
              <name>bare</name>
              <memory unit='MiB'>64</memory>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <devices>
                <disk type='file'><source file='{I("sda.qcow2")}'/><target dev='vda'/></disk>
                <disk type='file'><driver type='qcow2'/><source file='{I("sda.qcow2")}'/><target dev='vdb'/></disk>
                <disk type='file'><driver name='qemu' cache='none'/><source file='{I("vdb.raw")}'/><target dev='sdb'/></disk>
                <disk type='file' device='cdrom'><target dev='hdc'/></disk>
              </devices>
            </domain>
            """, Ct);

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("define", I("bare.xml"));
        virsh.Note("virsh dumpxml bare", await LiveDisks.DumpAsync(uri, "bare"));
        await virsh.RunAsync("undefine", "bare");
        // Paused: a booting guest's firmware locks and closes the trays in its own time, which
        // makes libvirtd's answers to the media changes below a race (Tidemark has no firmware).
        await virsh.RunAsync("start", "lx", "--paused");
        virsh.Note("virsh dumpxml lx", await LiveDisks.DumpAsync(uri, "lx"));
        await virsh.RunAsync("attach-disk", "lx", I("ctop.qcow2"), "vdc", "--subdriver", "qcow2", "--targetbus", "virtio");
        await virsh.RunAsync("change-media", "lx", "hdc", "--eject");
        await virsh.RunAsync("change-media", "lx", "hdd", I("cd2.iso"), "--insert");
        virsh.Note("virsh dumpxml lx", await LiveDisks.DumpAsync(uri, "lx"));

        // The live XML, defined again under another name.
        var live = XElement.Parse(await Peer.RunCheckedAsync("virsh", "-c", uri, "dumpxml", "lx"));
        Assert.Matches("^[0-9]+$", live.Attribute("id")?.Value ?? "");
        live.Element("name")!.Value = "copy";
        live.Element("uuid")?.Remove();
        await File.WriteAllTextAsync(I("copy.xml"), live.ToString(), Ct);
        await virsh.RunAsync("define", I("copy.xml"));
        virsh.Note("virsh dumpxml copy", await LiveDisks.DumpAsync(uri, "copy"));
        await virsh.RunAsync("undefine", "copy");
        await virsh.RunAsync("destroy", "lx");
        await virsh.RunAsync("undefine", "lx");
        return virsh.Mask(directory);
    }
}
