using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Images used by more than one domain, through stock virsh on the real libvirtd and on
/// Tidemark's daemon: two domains on overlays of one golden base image, sharing a raw
/// <c>&lt;shareable/&gt;</c> disk that both write; and the domains that must not start beside
/// them (the same image read-write or read-only, the base read-write, the shared image without
/// <c>&lt;shareable/&gt;</c>) or may (it read-only and shareable, the base read-only). A
/// shareable qcow2 disk is refused at define and attach. Checkpoints, writes from both guests
/// and an incremental push per domain follow; then the shared disk's backup, refused (push and
/// pull) while the other domain may write it, taken once that domain is off, and holding it off
/// while the job runs. The transcripts must be the same, with one mask:
/// QEMU words a lock conflict inside the command line it failed to start, Tidemark names the
/// image and the lock alone, so both come down to which lock on which image.
/// </summary>
public sealed partial class SharedImageDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ImagesSharedBetweenDomains_StartLockAndBackUpAsOnLibvirtd()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tsi", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains("$ virsh start gb\nDomain 'gb' started\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh start gg\nDomain 'gg' started\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh start gj\nDomain 'gj' started\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh backup-begin ga DIR/pull.xml\n\n[stderr]\nerror: internal error: unable to execute QEMU command 'transaction': Could not replace node: Failed to get shared \"write\" lock\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh start gc\n\n[stderr]\nerror: Failed to start domain 'gc'\nerror: \"write\" lock on DIR/same.qcow2\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh start gi\n\n[stderr]\nerror: Failed to start domain 'gi'\nerror: shared \"write\" lock on DIR/shared.raw\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: shared access for disk 'vda' requires use of supported storage format", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img compare shared.raw ga-vdb.raw\nImages are identical.\n0\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("base.qcow2"), "64M");
        await Peer.RunCheckedAsync("qemu-io", "-c", "write -P 0x11 0 4M", I("base.qcow2"));
        foreach (var overlay in new[] { "a.qcow2", "b.qcow2" })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("base.qcow2"), "-F", "qcow2", I(overlay));
        }

        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("shared.raw"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("same.qcow2"), "16M");
        var shared = BareDomain.FileDisk(I("shared.raw"), "vdb", "raw", "<shareable/>", cache: "none");
        var domains = new Dictionary<string, string>
        {
            ["ga"] = BareDomain.FileDisk(I("a.qcow2"), "vda", "qcow2") + shared + BareDomain.FileDisk(I("same.qcow2"), "vdc", "qcow2"),
            ["gb"] = BareDomain.FileDisk(I("b.qcow2"), "vda", "qcow2") + shared,
            ["gc"] = BareDomain.FileDisk(I("same.qcow2"), "vda", "qcow2"),
            ["gd"] = BareDomain.FileDisk(I("base.qcow2"), "vda", "qcow2"),
            ["ge"] = BareDomain.FileDisk(I("same.qcow2"), "vda", "qcow2", "<readonly/>"),
            ["gf"] = BareDomain.FileDisk(I("same.qcow2"), "vda", "qcow2", "<shareable/>"),
            ["gg"] = BareDomain.FileDisk(I("shared.raw"), "vda", "raw", "<readonly/><shareable/>"),
            ["gh"] = BareDomain.FileDisk(I("shared.raw"), "vda", "raw", "<readonly/>"),
            ["gi"] = BareDomain.FileDisk(I("shared.raw"), "vda", "raw"),
            ["gj"] = BareDomain.FileDisk(I("base.qcow2"), "vda", "qcow2", "<readonly/><shareable/>"),
        };
        foreach (var (name, disks) in domains)
        {
            await File.WriteAllTextAsync(I(name + ".xml"), BareDomain.Xml(name, disks), Ct);
            await virsh.RunAsync("define", I(name + ".xml"));
        }

        foreach (var name in domains.Keys)
        {
            await virsh.RunAsync("start", name);
        }

        await virsh.RunAsync("list", "--all");
        await File.WriteAllTextAsync(I("attach.xml"), BareDomain.FileDisk(I("same.qcow2"), "vdh", "qcow2", "<shareable/>"), Ct);
        await virsh.RunAsync("attach-device", "ga", I("attach.xml"));
        await virsh.RunAsync("attach-device", "gc", I("attach.xml"), "--config");

        // Tools outside the domains: the shareable holders deny nothing, so both may open it.
        var info = await Peer.RunAsync("qemu-img", ["info", "-f", "raw", I("shared.raw")]);
        virsh.Note("qemu-img info shared.raw", info.Stderr + info.ExitCode + "\n");
        var io = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 4k", I("shared.raw")]);
        virsh.Note("qemu-io -c 'read 0 4k' shared.raw", io.Stderr + io.ExitCode + "\n");

        await virsh.RunAsync("checkpoint-create-as", "ga", "c1", "--diskspec", "vda,checkpoint=bitmap", "--diskspec", "vdb,checkpoint=no", "--diskspec", "vdc,checkpoint=bitmap");
        await virsh.RunAsync("checkpoint-create-as", "gb", "c1", "--diskspec", "vda,checkpoint=bitmap", "--diskspec", "vdb,checkpoint=no");
        await write("ga", "vda", "write -P 0x22 1M 1M");
        await write("gb", "vda", "write -P 0x33 2M 1M");
        await write("ga", "vdb", "write -P 0x44 0 1M");
        await write("gb", "vdb", "write -P 0x55 1M 1M");
        foreach (var name in new[] { "ga", "gb" })
        {
            await virsh.RunAsync("checkpoint-dumpxml", name, "c1", "--size", "--no-domain");
            var vdc = name == "ga" ? "<disk name='vdc' backup='no'/>" : "";
            await File.WriteAllTextAsync(I(name + "-incremental.xml"), $"""
                <domainbackup>
                  <incremental>c1</incremental>
                  <disks>
                    <disk name='vda' type='file'><target file='{I(name + "-vda.qcow2")}'/><driver type='qcow2'/></disk>
                    <disk name='vdb' backup='no'/>{vdc}
                  </disks>
                </domainbackup>
                """, Ct);
            await virsh.RunAsync("backup-begin", name, I(name + "-incremental.xml"));
        }

        foreach (var name in new[] { "ga", "gb" })
        {
            await virsh.WaitForNoJobAsync(name);
            await virsh.RunAsync("domjobinfo", name, "--completed");
        }

        // The shared disk cannot be backed up while another domain may write it, push or pull,
        // and the job's files are gone again; once that domain is off, it can, and while the
        // job runs that domain cannot start.
        await File.WriteAllTextAsync(I("push.xml"), $"""
            <domainbackup>
              <disks>
                <disk name='vda' backup='no'/>
                <disk name='vdb' type='file'><target file='{I("ga-vdb.raw")}'/><driver type='raw'/></disk>
                <disk name='vdc' backup='no'/>
              </disks>
            </domainbackup>
            """, Ct);
        await File.WriteAllTextAsync(I("pull.xml"), $"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{I("pull.sock")}'/>
              <disks>
                <disk name='vda' backup='no'/>
                <disk name='vdb' type='file'><scratch file='{I("vdb.scratch")}'/></disk>
                <disk name='vdc' backup='no'/>
              </disks>
            </domainbackup>
            """, Ct);
        await virsh.RunAsync("backup-begin", "ga", I("push.xml"));
        await virsh.RunAsync("backup-begin", "ga", I("pull.xml"));
        virsh.Note("ls ga-vdb.raw vdb.scratch", string.Concat(new[] { "ga-vdb.raw", "vdb.scratch" }.Where(f => File.Exists(I(f))).Select(f => f + "\n")));
        await virsh.RunAsync("destroy", "gb");
        await virsh.RunAsync("backup-begin", "ga", I("pull.xml"));
        await virsh.RunAsync("start", "gb");
        await virsh.RunAsync("domjobabort", "ga");
        await virsh.WaitForNoJobAsync("ga");
        await virsh.RunAsync("backup-begin", "ga", I("push.xml"));
        await virsh.WaitForNoJobAsync("ga");
        await virsh.RunAsync("domjobinfo", "ga", "--completed");
        await virsh.RunAsync("start", "gb");

        foreach (var name in domains.Keys)
        {
            await virsh.RunAsync("destroy", name);
        }

        foreach (var name in new[] { "ga", "gb" })
        {
            var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", I(name + "-vda.qcow2"));
            virsh.Note($"qemu-img map {name}-vda.qcow2 | data", string.Concat(MapEntry().Matches(map).Select(m => $"{m.Groups["start"]}+{m.Groups["length"]} data={m.Groups["data"]}\n")));
        }

        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", I("shared.raw"), I("ga-vdb.raw")]);
        virsh.Note("qemu-img compare shared.raw ga-vdb.raw", compare.Stdout + compare.ExitCode + "\n");

        foreach (var name in domains.Keys)
        {
            await virsh.RunAsync("undefine", name, "--checkpoints-metadata");
        }

        return LockConflict().Replace(virsh.Mask(directory), "${kind}\"write\" lock on ${path}\n");
    }


    // libvirtd: QEMU's words after the command-line option it failed on ("internal error: process
    // exited while connecting to monitor: TIME qemu-system-x86_64: -blockdev {...}: Failed to get
    // "write" lock\nIs another process using the image [PATH]?"); Tidemark: "operation failed:
    // PATH: Failed to get "write" lock: is another process using the image?".
    [GeneratedRegex("""(?:internal error: .*: Failed to get (?<kind>shared )?"write" lock\nIs another process using the image \[(?<path>[^\]]+)\]\?|operation failed: (?<path>\S+): Failed to get (?<kind>shared )?"write" lock: is another process using the image\?)\n""")]
    private static partial Regex LockConflict();

    [GeneratedRegex("""\{ "start": (?<start>\d+), "length": (?<length>\d+), "depth": \d+, "present": true, "zero": (?:true|false), "data": (?<data>true|false)""")]
    private static partial Regex MapEntry();
}
