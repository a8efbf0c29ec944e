using System.Xml.Linq;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Device aliases and device events through stock virsh on the real libvirtd and on Tidemark's
/// daemon: the alias each disk of a running domain gets (virtio by its name's index, IDE and
/// SCSI by drive address, the user's own <c>ua-</c> alias kept), the device-added event of each
/// disk hot-plugged, and <c>detach-device-alias</c> from the running domain (a SCSI disk, which
/// QEMU unplugs without the guest: device-removed follows) and from the definition, with its
/// refusals. Live detaching of a virtio disk is left out: QEMU waits for a guest operating
/// system to release it. The transcripts, and the events <c>virsh event --all --loop</c>
/// printed, must be equal.
/// </summary>
public sealed class DeviceAliasDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AliasesAndDeviceEvents_ReadTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tda", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("vda virtio-disk0\nvdb virtio-disk1\nvdc ua-vdc\nhdb ide0-0-1\nsda scsi0-0-0\nsdc scsi0-0-2\n", real, StringComparison.Ordinal);
        Assert.Contains("event 'device-added' for domain 'da': virtio-disk1\nevent 'device-added' for domain 'da': ua-vdc\n", real, StringComparison.Ordinal);
        Assert.Contains("event 'device-removed' for domain 'da': scsi0-0-2\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: no device found with alias nosuch\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "da");
        Directory.CreateDirectory(images);
        string Image(string name) => Path.Combine(images, name + ".qcow2");
        foreach (var name in new[] { "vda", "hdb", "sda", "c1", "c2", "c3", "c4" })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", Image(name), "16M");
        }

        var xml = Path.Combine(images, "da.xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>da</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <features><acpi/></features>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <controller type='pci' index='0' model='pci-root'/>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{Image("vda")}'/><target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{Image("hdb")}'/><target dev='hdb' bus='ide'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{Image("sda")}'/><target dev='sda' bus='scsi'/></disk>
              </devices>
            </domain>
            """, Ct);

        // The watcher registers in its own time: define until it reports the definition.
        await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
        const string defined = "event 'lifecycle' for domain 'da': Defined Added";
        for (var attempt = 0; ; attempt++)
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "define", xml])).EnsureSuccess();
            if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
            {
                break;
            }

            Assert.True(attempt < 20, "virsh event reported no definition of da");
            (await Peer.RunAsync("virsh", ["-c", uri, "undefine", "da"])).EnsureSuccess();
        }

        await virsh.RunAsync("start", "da");
        await virsh.RunAsync("attach-disk", "da", Image("c1"), "vdb", "--subdriver", "qcow2", "--targetbus", "virtio");
        await virsh.RunAsync("attach-disk", "da", Image("c2"), "vdc", "--subdriver", "qcow2", "--targetbus", "virtio", "--alias", "ua-vdc");
        await virsh.RunAsync("attach-disk", "da", Image("c3"), "sdc", "--subdriver", "qcow2", "--targetbus", "scsi");
        await virsh.RunAsync("attach-disk", "da", Image("c4"), "vdd", "--subdriver", "qcow2", "--targetbus", "virtio", "--alias", "ua-vdd", "--config");
        virsh.Note("aliases of the running domain", await AliasesAsync(uri, live: true));
        virsh.Note("aliases of the definition", await AliasesAsync(uri, live: false));
        await virsh.RunAsync("detach-device-alias", "da", "scsi0-0-2");
        await virsh.RunAsync("detach-device-alias", "da", "nosuch");
        await virsh.RunAsync("detach-device-alias", "da", "ua-vdc", "--config");
        await virsh.RunAsync("detach-device-alias", "da", "virtio-disk0", "--config");
        await virsh.RunAsync("detach-device-alias", "da", "ua-vdd", "--config");
        await virsh.RunAsync("detach-device-alias", "da", "ua-vdd", "--current", "--live");
        await virsh.RunAsync("domblklist", "da");
        await virsh.RunAsync("domblklist", "da", "--inactive");
        await virsh.RunAsync("destroy", "da");
        await virsh.RunAsync("detach-device-alias", "da", "virtio-disk0");
        await virsh.RunAsync("undefine", "da");

        // The undefinition is the last event: once it is seen, every earlier one is in.
        await events.WaitForLineAsync("event 'lifecycle' for domain 'da': Undefined");
        await events.KillAsync();
        virsh.Note("virsh event --all --loop", string.Concat(events.LinesFromLast(defined).Select(l => l + "\n")));
        return virsh.Mask(directory);
    }

    /// <summary>Each disk's target and alias, from <c>virsh dumpxml</c> (live or <c>--inactive</c>).</summary>
    private static async Task<string> AliasesAsync(string uri, bool live)
    {
        var xml = await Peer.RunCheckedAsync("virsh", live ? ["-c", uri, "dumpxml", "da"] : ["-c", uri, "dumpxml", "da", "--inactive"]);
        return string.Concat(XElement.Parse(xml).Element("devices")!.Elements("disk")
            .Select(d => $"{d.Element("target")?.Attribute("dev")?.Value} {d.Element("alias")?.Attribute("name")?.Value ?? "-"}\n"));
    }
}
