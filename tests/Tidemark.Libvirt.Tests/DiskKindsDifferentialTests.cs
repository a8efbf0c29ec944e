using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Disks of every kind one domain can hold, through stock virsh on the real libvirtd and on
/// Tidemark's daemon: qcow2, raw, read-only, shareable raw, discard and detect-zeroes options, a
/// three-layer backing chain, CD-ROMs with and without media, and disks hot-plugged with
/// chains of one, two and three layers. A checkpoint's refusals for each, the disks a pull
/// backup takes by default and the node index each scratch file gets (libvirt's counter, which
/// numbers every layer and empty drive at the start and counts hot-plugged chains twice), a
/// push of the read-only ones named explicitly, and the job's totals must read the same.
/// </summary>
public sealed partial class DiskKindsDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DefaultsRefusalsAndStoreIndexes_ReadTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdk", RunAsync, Ct);

        Assert.Equal(real, ours);
        Assert.Contains("error: unsupported configuration: checkpoint for disk vdb unsupported for storage type raw\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: disk 'hdd' is empty or readonly\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' backup='yes' type='file' backupmode='full' exportname='vda' index='21'>", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdk' backup='yes' type='file' backupmode='full' exportname='vdk' index='29'>", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='hdd' backup='no'/>", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "dk");
        Directory.CreateDirectory(images);
        string I(string name) => Path.Combine(images, name);
        async Task Image(string name, string format, string? backing = null)
            => await Peer.RunCheckedAsync("qemu-img", backing is null
                ? ["create", "-q", "-f", format, I(name), "16M"]
                : ["create", "-q", "-f", format, "-b", I(backing), "-F", "qcow2", I(name)]);

        await Image("vda.qcow2", "qcow2");
        await Image("vdb.raw", "raw");
        await Image("vdc.qcow2", "qcow2");
        await Image("vde.raw", "raw");
        await Image("vdf.qcow2", "qcow2");
        await Image("base2.qcow2", "qcow2");
        await Image("mid2.qcow2", "qcow2", "base2.qcow2");
        await Image("vdi.qcow2", "qcow2", "mid2.qcow2");
        await Image("cd.iso", "raw");
        var xml = I("dk.xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>dk</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <features><acpi/></features>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("vda.qcow2")}'/><target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{I("vdb.raw")}'/><target dev='vdb' bus='virtio'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("vdc.qcow2")}'/><target dev='vdc' bus='virtio'/><readonly/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='{I("vde.raw")}'/><target dev='vde' bus='virtio'/><shareable/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap' detect_zeroes='unmap'/><source file='{I("vdf.qcow2")}'/><target dev='vdf' bus='virtio'/></disk>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("vdi.qcow2")}'/><target dev='vdi' bus='virtio'/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("cd.iso")}'/><target dev='hdc' bus='ide'/><readonly/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdd' bus='ide'/><readonly/></disk>
              </devices>
            </domain>
            """, Ct);
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "dk");

        await Image("vdh.qcow2", "qcow2");
        await Image("base.qcow2", "qcow2");
        await Image("vdg.qcow2", "qcow2", "base.qcow2");
        await Image("base3.qcow2", "qcow2");
        await Image("mid3.qcow2", "qcow2", "base3.qcow2");
        await Image("vdj.qcow2", "qcow2", "mid3.qcow2");
        await Image("vdk.raw", "raw");
        await virsh.RunAsync("attach-disk", "dk", I("vdh.qcow2"), "vdh", "--subdriver", "qcow2", "--targetbus", "virtio");
        await virsh.RunAsync("attach-disk", "dk", I("vdg.qcow2"), "vdg", "--subdriver", "qcow2", "--targetbus", "virtio");
        await virsh.RunAsync("attach-disk", "dk", I("vdj.qcow2"), "vdj", "--subdriver", "qcow2", "--targetbus", "virtio");
        await virsh.RunAsync("attach-disk", "dk", I("vdk.raw"), "vdk", "--subdriver", "raw", "--targetbus", "virtio");

        await virsh.RunAsync("checkpoint-create-as", "dk", "c1");
        foreach (var disk in new[] { "vdc", "hdc", "vdb", "vde", "hdd" })
        {
            await virsh.RunAsync("checkpoint-create-as", "dk", "c-" + disk, "--diskspec", disk + ",checkpoint=bitmap");
        }

        var socket = Path.Combine(directory, "dk-pull.sock");
        var pull = I("pull.xml");
        await File.WriteAllTextAsync(pull, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/></domainbackup>", Ct);
        await virsh.RunAsync("backup-begin", "dk", pull);
        await virsh.RunAsync("backup-dumpxml", "dk");
        await virsh.RunAsync("domjobabort", "dk");
        await virsh.WaitForNoJobAsync("dk");

        var push = I("push.xml");
        await File.WriteAllTextAsync(push, $"""
            <domainbackup><disks>
              <disk name='vda' type='file'><target file='{I("t-vda")}'/></disk>
              <disk name='hdc' type='file'><target file='{I("t-hdc")}'/></disk>
              <disk name='vdc' type='file'><target file='{I("t-vdc")}'/></disk>
              <disk name='vde' type='file'><target file='{I("t-vde")}'/></disk>
            </disks></domainbackup>
            """, Ct);
        await virsh.RunAsync("backup-begin", "dk", push);
        await virsh.WaitForNoJobAsync("dk");
        await virsh.RunAsync("domjobinfo", "dk", "--completed");
        virsh.Note("ls", string.Join('\n', Directory.GetFiles(images).Select(Path.GetFileName).Where(f => f!.StartsWith("t-", StringComparison.Ordinal)).Order()) + "\n");
        await virsh.RunAsync("destroy", "dk");
        await virsh.RunAsync("undefine", "dk", "--checkpoints-metadata");
        return ScratchSuffix().Replace(virsh.Mask(directory), ".SECONDS'");
    }

    // A scratch file is named after its disk's image and the job's start in seconds.
    [GeneratedRegex(@"\.\d{10}'")]
    private static partial Regex ScratchSuffix();
}
