using System.Security.Cryptography;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Block devices as a domain's disk and as backup stores (spec §6.7 step 11, §6.9, §6.10),
/// against the real libvirtd with QEMU writing them and against Tidemark's daemon: a loop
/// device each (full of a pattern, as a logical volume holds old data) for the qcow2 disk, a raw
/// and a qcow2 push target and a pull scratch. Stock virsh runs the same sequence on both; the
/// transcripts (the devices' names masked), what each target and the pull's export read as, and
/// what is left on the scratch must be equal.
/// </summary>
public sealed partial class BlockDeviceDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "blk";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task BlockDiskAndStores_PrintAndHoldTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdblk", RunAsync, Ct);
        Assert.Contains("Allocation:     0\n", real, StringComparison.Ordinal);
        Assert.Equal(real, ours);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite guestWrite)
    {
        var work = Path.Combine(directory, Domain);
        Directory.CreateDirectory(work);
        await using var disk = await LoopDevice.AttachAsync(work, 48L << 20);
        await using var raw = await LoopDevice.AttachAsync(work, 16L << 20);
        await using var qcow2 = await LoopDevice.AttachAsync(work, 32L << 20);
        await using var scratch = await LoopDevice.AttachAsync(work, 32L << 20);
        var names = new Dictionary<string, string> { [disk.Path] = "DISK", [raw.Path] = "RAW", [qcow2.Path] = "QCOW2", [scratch.Path] = "SCRATCH" };
        string Mask(string text) => names.Aggregate(text, (t, n) => t.Replace(n.Key + "'", n.Value + "'", StringComparison.Ordinal).Replace(n.Key + "\n", n.Value + "\n", StringComparison.Ordinal).Replace(n.Key + " ", n.Value + " ", StringComparison.Ordinal).Replace(n.Key + "\"", n.Value + "\"", StringComparison.Ordinal));
        string Doc(string name, string text)
        {
            var path = Path.Combine(work, name);
            File.WriteAllText(path, text);
            return path;
        }

        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", disk.Path, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 1M", "-c", "write -P 0x42 9M 4k", disk.Path);
        var virsh = new VirshTranscript(uri);
        await virsh.RunAsync("define", Doc("domain.xml", $"""
            <domain type='qemu'>
              <name>{Domain}</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os>
                <type arch='x86_64' machine='pc'>hvm</type>
              </os>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='block' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source dev='{disk.Path}'/>
                  <target dev='vda' bus='virtio'/>
                  <alias name='ua-vda'/>
                </disk>
              </devices>
            </domain>
            """));
        await virsh.RunAsync("start", Domain);
        await virsh.RunAsync("domblkinfo", Domain, "vda");
        await virsh.RunAsync("domblklist", Domain, "--details");

        var notADevice = Path.Combine(work, "not-a-device");
        await File.WriteAllBytesAsync(notADevice, new byte[1 << 20], Ct);
        var refused = Doc("refused.xml", $"""
            <domainbackup><disks><disk name='vda' type='block'><driver type='raw'/><target dev='{notADevice}'/></disk></disks></domainbackup>
            """);
        await virsh.RunAsync("backup-begin", Domain, refused);
        var missing = Doc("missing.xml", $"""
            <domainbackup><disks><disk name='vda' type='block'><driver type='raw'/><target dev='{Path.Combine(work, "no-such-device")}'/></disk></disks></domainbackup>
            """);
        await virsh.RunAsync("backup-begin", Domain, missing);

        var full = Doc("full.xml", $"""
            <domainbackup><disks><disk name='vda' type='block'><driver type='raw'/><target dev='{raw.Path}'/></disk></disks></domainbackup>
            """);
        await virsh.RunAsync("backup-begin", Domain, full, Doc("c1.xml", "<domaincheckpoint><name>c1</name></domaincheckpoint>"));
        await virsh.WaitForNoJobAsync(Domain);
        await guestWrite(Domain, "vda", "write -P 0x51 2M 64k");
        await guestWrite(Domain, "vda", "write -z 0 64k");
        await guestWrite(Domain, "vda", "write -P 0x52 12M 4k");
        await virsh.RunAsync("domblkinfo", Domain, "vda");
        var incremental = Doc("inc.xml", $"""
            <domainbackup><incremental>c1</incremental><disks><disk name='vda' type='block'><driver type='qcow2'/><target dev='{qcow2.Path}'/></disk></disks></domainbackup>
            """);
        await virsh.RunAsync("backup-begin", Domain, incremental);
        await virsh.WaitForNoJobAsync(Domain);

        await guestWrite(Domain, "vda", "write -P 0x61 5M 128k");
        var socket = Path.Combine(work, "pull.sock");
        var pull = Doc("pull.xml", $"""
            <domainbackup mode='pull'><incremental>c1</incremental>
              <server transport='unix' socket='{socket}'/>
              <disks><disk name='vda' type='block'><scratch dev='{scratch.Path}'/></disk></disks>
            </domainbackup>
            """);
        await virsh.RunAsync("backup-begin", Domain, pull);
        await guestWrite(Domain, "vda", "write -P 0x71 0 8M");
        var export = Path.Combine(work, "export.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={socket}", export);
        virsh.Note("nbdinfo --map=qemu:dirty-bitmap:backup-vda", await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:backup-vda", $"nbd+unix:///vda?socket={socket}"));
        await virsh.RunAsync("domjobabort", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        await virsh.RunAsync("destroy", Domain);
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");

        // What each store reads as, and what is left on the scratch (libvirt leaves a block
        // scratch as it is): the raw target over its whole device, the qcow2 target without its
        // backing file (the live disk, which has moved on), the export as nbdcopy read it.
        virsh.Note("sha256 RAW", Sha256(await File.ReadAllBytesAsync(raw.Path, Ct)));
        var alone = Path.Combine(work, "qcow2-alone.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", $"json:{{\"driver\":\"qcow2\",\"backing\":null,\"file\":{{\"driver\":\"host_device\",\"filename\":\"{qcow2.Path}\"}}}}", alone);
        virsh.Note("sha256 QCOW2 alone", Sha256(await File.ReadAllBytesAsync(alone, Ct)));
        virsh.Note("qemu-img info QCOW2", await Peer.RunCheckedAsync("qemu-img", "info", "-f", "qcow2", "--backing-chain", qcow2.Path));
        virsh.Note("sha256 export", Sha256(await File.ReadAllBytesAsync(export, Ct)));
        // Where each host put the clusters in the device is its own (QEMU's allocation order
        // and Tidemark's differ): fragmentation and the image's end are left out.
        var check = (await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", disk.Path])).Stdout;
        virsh.Note("qemu-img check DISK", Layout().Replace(check, "LAYOUT"));
        var left = await Peer.RunAsync("qemu-img", ["info", "-f", "qcow2", scratch.Path]);
        virsh.Note("qemu-img info SCRATCH", $"exit {left.ExitCode}\n");
        return Mask(virsh.Mask(directory));
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"[\d.]+% fragmented|Image end offset: \d+")]
    private static partial System.Text.RegularExpressions.Regex Layout();

    private static string Sha256(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes)) + "\n";
}
