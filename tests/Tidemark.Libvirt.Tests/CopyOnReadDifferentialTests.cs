using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A disk with <c>copy_on_read='on'</c> over a backing file, through stock virsh on the real
/// libvirtd (QEMU's copy-on-read filter node) and on Tidemark's daemon: the guest's reads copy
/// what they find below into the top image, cluster by cluster (data as data, zeroes as zero
/// clusters, also where nothing is allocated), and no checkpoint's bitmap counts them; a
/// read-only disk that would copy on read, and a read error policy of enospace, are refused at
/// define. The transcripts, the top image's map among them, must be the same.
/// </summary>
public sealed partial class CopyOnReadDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GuestReads_CopyIntoTheTopImage_WithoutDirtyingBitmaps_AsOnLibvirtd()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tcr", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='k1' size='0'/>", real, StringComparison.Ordinal);
        Assert.Contains("{ \"start\": 0, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true}", real, StringComparison.Ordinal);
        Assert.Contains("{ \"start\": 8388608, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false}", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img compare\nImages are identical.\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: copy_on_read is not compatible with read-only disk 'vda'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: Invalid disk read error policy: 'enospace'\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite guest)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("cr-base.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -z 2M 1M", I("cr-base.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("cr-base.qcow2"), "-F", "qcow2", I("cr-top.qcow2"), "16M");
        var disk = BareDomain.FileDisk(I("cr-top.qcow2"), "vda", "qcow2").Replace("type='qcow2'/>", "type='qcow2' copy_on_read='on'/>", StringComparison.Ordinal);
        await File.WriteAllTextAsync(I("cr.xml"), BareDomain.Xml("cr", disk), Ct);
        await virsh.RunAsync("define", I("cr.xml"));
        await virsh.RunAsync("start", "cr");
        await virsh.RunAsync("checkpoint-create-as", "cr", "k1");

        // Data below, part of a cluster, zeroes allocated below, nothing allocated, the last cluster.
        foreach (var read in (string[])["read -P 0x11 0 64k", "read -P 0x11 4096 512", "read -P 0 2M 64k", "read -P 0 1M 64k", "read -P 0 8M 64k", "read -P 0 16711680 65536"])
        {
            await guest("cr", "vda", read);
        }

        await virsh.RunAsync("checkpoint-dumpxml", "cr", "k1", "--size", "--no-domain");
        await virsh.RunAsync("destroy", "cr");

        // Where the clusters landed in the file is each host's own choice.
        var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", I("cr-top.qcow2"));
        virsh.Note("qemu-img map --output=json cr-top.qcow2", HostOffset().Replace(map, ""));
        virsh.Note("qemu-img compare", await Peer.RunCheckedAsync("qemu-img", "compare", I("cr-top.qcow2"), I("cr-base.qcow2")));
        virsh.Note("qemu-img check", (await Peer.RunCheckedAsync("qemu-img", "check", I("cr-top.qcow2"))).Split('\n')[0] + "\n");
        await virsh.RunAsync("undefine", "cr", "--checkpoints-metadata");

        // What QEMU's device cannot take is refused at define.
        foreach (var (name, driver, extra) in new[] { ("cro", "copy_on_read='on'", "<readonly/>"), ("rre", "error_policy='stop' rerror_policy='enospace'", "") })
        {
            var refused = BareDomain.FileDisk(I("cr-base.qcow2"), "vda", "qcow2", extra).Replace("type='qcow2'/>", $"type='qcow2' {driver}/>", StringComparison.Ordinal);
            await File.WriteAllTextAsync(I(name + ".xml"), BareDomain.Xml(name, refused), Ct);
            await virsh.RunAsync("define", I(name + ".xml"));
        }

        return virsh.Mask(directory);
    }

    [GeneratedRegex(", \"offset\": [0-9]+")]
    private static partial Regex HostOffset();
}
