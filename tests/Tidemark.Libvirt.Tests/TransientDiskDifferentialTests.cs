using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Disks marked <c>&lt;transient/&gt;</c>, through stock virsh on the real libvirtd and on
/// Tidemark's daemon: a qcow2 and a raw transient disk beside an ordinary one. The start makes
/// each an overlay beside its image (<c>&lt;source&gt;.TRANSIENT-&lt;domain&gt;</c>, qcow2, backed
/// by the image) that the live XML names; the guest's writes land there; checkpoints and backups
/// of a transient disk are refused, of the other disk taken; a resize grows the overlay; a
/// transient disk hot-plugged gets an overlay too; the stop deletes
/// the overlays and leaves the images as they were; an overlay already there stops the start;
/// read-only transient disks are refused at define. The transcripts must be the same.
/// </summary>
public sealed class TransientDiskDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task TransientDisks_RunOnOverlaysTheStopDeletes_AsOnLibvirtd()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "ttd", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains(" vda      DIR/t.qcow2.TRANSIENT-gt\n vdb      DIR/t.raw.TRANSIENT-gt\n vdc      DIR/n.qcow2\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Operation not supported: block jobs are not supported on transient disk 'vda'", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img compare t.qcow2 t-before.qcow2\nImages are identical.\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: transient disk 'vda' must not be read-only", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        void List(string when) => virsh.Note("ls " + when, string.Concat(Directory.GetFiles(directory).Select(Path.GetFileName).Where(f => f!.Contains(".TRANSIENT-", StringComparison.Ordinal) || f.EndsWith(".qcow2", StringComparison.Ordinal) || f.EndsWith(".raw", StringComparison.Ordinal)).Order(StringComparer.Ordinal).Select(f => f + "\n")));
        async Task InfoAsync(string file)
        {
            var info = await Peer.RunAsync("qemu-img", ["info", "-U", I(file)]);
            virsh.Note("qemu-img info " + file, string.Concat(info.Stdout.Split('\n').Where(l => l.StartsWith("file format", StringComparison.Ordinal) || l.StartsWith("virtual size", StringComparison.Ordinal) || l.StartsWith("backing file", StringComparison.Ordinal) || l.StartsWith("cluster_size", StringComparison.Ordinal)).Select(l => l + "\n")) + info.Stderr);
        }

        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("t.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-io", "-c", "write -P 0x11 0 1M", I("t.qcow2"));
        File.Copy(I("t.qcow2"), I("t-before.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("t.raw"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("n.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("h.qcow2"), "8M");
        await File.WriteAllTextAsync(I("gt.xml"), BareDomain.Xml("gt", BareDomain.FileDisk(I("t.qcow2"), "vda", "qcow2", "<transient/>") + BareDomain.FileDisk(I("t.raw"), "vdb", "raw", "<transient/>") + BareDomain.FileDisk(I("n.qcow2"), "vdc", "qcow2"), acpi: true), Ct);
        await virsh.RunAsync("define", I("gt.xml"));
        await virsh.RunAsync("start", "gt");
        await virsh.RunAsync("domblklist", "gt");
        virsh.Note("virsh dumpxml gt | disks", (await LiveDisks.DumpAsync(uri, "gt")).Replace(directory, "DIR", StringComparison.Ordinal));
        await virsh.RunAsync("dumpxml", "gt", "--inactive", "--xpath", "//disk/source");
        await InfoAsync("t.qcow2.TRANSIENT-gt");
        await InfoAsync("t.raw.TRANSIENT-gt");
        List("while running");

        await write("gt", "vda", "write -P 0x22 0 1M");
        await write("gt", "vdb", "write -P 0x33 0 1M");
        await write("gt", "vdc", "write -P 0x44 0 1M");
        await virsh.RunAsync("checkpoint-create-as", "gt", "c1");
        await virsh.RunAsync("checkpoint-create-as", "gt", "c2", "--diskspec", "vda,checkpoint=no", "--diskspec", "vdb,checkpoint=no", "--diskspec", "vdc,checkpoint=bitmap");
        await File.WriteAllTextAsync(I("transient.xml"), $"<domainbackup><disks><disk name='vda' type='file'><target file='{I("bk-vda.qcow2")}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/><disk name='vdc' backup='no'/></disks></domainbackup>", Ct);
        await File.WriteAllTextAsync(I("other.xml"), $"<domainbackup><disks><disk name='vda' backup='no'/><disk name='vdb' backup='no'/><disk name='vdc' type='file'><target file='{I("bk-vdc.qcow2")}'/><driver type='qcow2'/></disk></disks></domainbackup>", Ct);
        await virsh.RunAsync("backup-begin", "gt", I("transient.xml"));
        await virsh.RunAsync("backup-begin", "gt", I("other.xml"));
        await virsh.WaitForNoJobAsync("gt");
        await virsh.RunAsync("domjobinfo", "gt", "--completed");
        await virsh.RunAsync("blockresize", "gt", "vda", "32M");
        await virsh.RunAsync("domblkinfo", "gt", "vda");
        await InfoAsync("t.qcow2.TRANSIENT-gt");

        await File.WriteAllTextAsync(I("hot.xml"), BareDomain.FileDisk(I("h.qcow2"), "vdd", "qcow2", "<transient/>"), Ct);
        await virsh.RunAsync("attach-device", "gt", I("hot.xml"));
        await virsh.RunAsync("domblklist", "gt");
        List("after the hot-plug");

        // Not listed after the detach: libvirtd's guest never completes the unplug (no OS to
        // answer it), so its overlay stays until the stop; Tidemark's detach is done at once,
        // and the overlay goes with the disk.
        await virsh.RunAsync("detach-device", "gt", I("hot.xml"));

        await virsh.RunAsync("destroy", "gt");
        List("after the stop");
        var compare = await Peer.RunAsync("qemu-img", ["compare", I("t.qcow2"), I("t-before.qcow2")]);
        virsh.Note("qemu-img compare t.qcow2 t-before.qcow2", compare.Stdout + compare.Stderr);
        var raw = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", I("t.raw"));
        virsh.Note("qemu-img map t.raw", raw);

        // An overlay already there (a file of that name) stops the start; nothing is created.
        await File.WriteAllTextAsync(I("t.raw.TRANSIENT-gt"), "", Ct);
        await virsh.RunAsync("start", "gt");
        List("after the refused start");
        File.Delete(I("t.raw.TRANSIENT-gt"));
        await virsh.RunAsync("undefine", "gt", "--checkpoints-metadata");

        foreach (var (name, disk) in new[]
        {
            ("r1", BareDomain.FileDisk(I("t.qcow2"), "vda", "qcow2", "<readonly/><transient/>")),
            ("r2", $"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("t.raw")}'/><target dev='hdc' bus='ide'/><transient/></disk>"),
        })
        {
            await File.WriteAllTextAsync(I(name + ".xml"), BareDomain.Xml(name, disk, acpi: true), Ct);
            await virsh.RunAsync("define", I(name + ".xml"));
        }

        return virsh.Mask(directory);
    }
}
