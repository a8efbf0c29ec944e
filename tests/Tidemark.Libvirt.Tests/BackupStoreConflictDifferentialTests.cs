using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Reused backup stores (<c>--reuse-external</c>) that cannot serve, through stock virsh on the
/// real libvirtd and on Tidemark's daemon: another running domain's disk, the domain's own disk
/// and its backing file as a push target or a pull scratch (each held by a running VM), a raw
/// store of another size than the disk (a qcow2 file named as raw, a raw file of another
/// length; QEMU checks the size before it takes a raw node's locks), a qcow2 store of another
/// virtual size, and one that fits. Every refusal leaves the store as it was. The transcripts
/// must be the same.
/// </summary>
public sealed class BackupStoreConflictDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StoresInUseOrOfAnotherSize_AreRefusedAsOnLibvirtd()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tbs", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains("$ virsh backup-begin ga DIR/push-other-disk.xml --reuse-external\n\n[stderr]\nerror: internal error: unable to execute QEMU command 'blockdev-add': Failed to get \"write\" lock\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh backup-begin ga DIR/push-qcow2-as-raw.xml --reuse-external\n\n[stderr]\nerror: internal error: unable to execute QEMU command 'transaction': Source and target image have different sizes\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh backup-begin ga DIR/push-fits.xml --reuse-external\nBackup started\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("base.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("base.qcow2"), "-F", "qcow2", I("a.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("b.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("c.raw"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("free.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("big.qcow2"), "32M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("free.raw"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("small.raw"), "8M");
        await File.WriteAllTextAsync(I("ga.xml"), BareDomain.Xml("ga", BareDomain.FileDisk(I("a.qcow2"), "vda", "qcow2")), Ct);
        await File.WriteAllTextAsync(I("gb.xml"), BareDomain.Xml("gb", BareDomain.FileDisk(I("b.qcow2"), "vda", "qcow2") + BareDomain.FileDisk(I("c.raw"), "vdb", "raw")), Ct);
        foreach (var name in new[] { "ga", "gb" })
        {
            await virsh.RunAsync("define", I(name + ".xml"));
            await virsh.RunAsync("start", name);
        }

        string Push(string target, string format) => $"<domainbackup><disks><disk name='vda' type='file'><target file='{target}'/><driver type='{format}'/></disk></disks></domainbackup>";
        string Pull(string scratch, string format) => $"<domainbackup mode='pull'><server transport='unix' socket='{I("p.sock")}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/><driver type='{format}'/></disk></disks></domainbackup>";
        var cases = new (string Name, string Xml)[]
        {
            ("push-other-disk", Push(I("b.qcow2"), "qcow2")),
            ("push-other-raw-disk", Push(I("c.raw"), "raw")),
            ("push-own-disk", Push(I("a.qcow2"), "qcow2")),
            ("push-base", Push(I("base.qcow2"), "qcow2")),
            ("push-qcow2-as-raw", Push(I("free.qcow2"), "raw")),
            ("push-raw-as-qcow2", Push(I("free.raw"), "qcow2")),
            ("push-small-raw", Push(I("small.raw"), "raw")),
            ("push-big-qcow2", Push(I("big.qcow2"), "qcow2")),
            ("pull-other-disk", Pull(I("b.qcow2"), "qcow2")),
            ("pull-base", Pull(I("base.qcow2"), "qcow2")),
            ("pull-big-qcow2", Pull(I("big.qcow2"), "qcow2")),
            ("push-fits", Push(I("free.qcow2"), "qcow2")),
        };
        foreach (var (name, xml) in cases)
        {
            await File.WriteAllTextAsync(I(name + ".xml"), xml, Ct);
            await virsh.RunAsync("backup-begin", "ga", I(name + ".xml"), "--reuse-external");
            await virsh.WaitForNoJobAsync("ga");
        }

        await virsh.RunAsync("domjobinfo", "ga", "--completed");
        foreach (var name in new[] { "ga", "gb" })
        {
            await virsh.RunAsync("destroy", name);
            await virsh.RunAsync("undefine", name);
        }

        // The refused stores are as they were: no bitmap, no data, the sizes they had.
        foreach (var file in new[] { "b.qcow2", "base.qcow2", "big.qcow2", "small.raw", "free.raw" })
        {
            var check = await Peer.RunAsync("qemu-img", ["info", "--output=json", I(file)]);
            virsh.Note("qemu-img info " + file, string.Concat(check.Stdout.Split('\n').Where(l => l.Contains("\"virtual-size\"", StringComparison.Ordinal) || l.Contains("\"bitmaps\"", StringComparison.Ordinal) || l.Contains("\"actual-size\"", StringComparison.Ordinal) && file.EndsWith(".raw", StringComparison.Ordinal)).Select(l => l.Trim() + "\n")));
        }

        var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", I("b.qcow2"));
        virsh.Note("qemu-img map b.qcow2", map);
        return virsh.Mask(directory);
    }
}
