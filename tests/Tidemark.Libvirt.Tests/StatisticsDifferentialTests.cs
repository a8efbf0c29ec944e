using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// The statistics commands on the real libvirtd and on Tidemark's daemon, on the same machine:
/// <c>virsh nodeinfo</c> (the host, read as libvirt reads it), <c>domblkstat</c> of one disk, of
/// all disks and in words, <c>domblkerror</c>, <c>domstats</c> with the state and block groups
/// (and the block group's backing layers, <c>--backing</c>, of a disk over a chain of three),
/// and the refusals (an unknown disk, a domain shut off). The guests are paused from their start,
/// so every counter is zero on both, as is each running disk's highest write; the sizes are the
/// same images' on both (what the file system holds, their lengths), and the node indexes
/// libvirtd's numbering.
/// </summary>
public sealed class StatisticsDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task NodeInfoBlockStatsErrorsAndDomainStats_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdq", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh nodeinfo\nCPU model:           x86_64\nCPU(s):              " + Environment.ProcessorCount + "\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domblkstat sq vda\nvda rd_req 0\nvda rd_bytes 0\nvda wr_req 0\nvda wr_bytes 0\nvda flush_operations 0\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domblkerror sq\nNo errors found\n", real, StringComparison.Ordinal);
        Assert.Contains("  state.state=3\n  state.reason=1\n  block.count=2\n  block.0.name=vda\n  block.0.path=DIR/sq/vda.qcow2\n  block.0.backingIndex=2\n  block.0.rd.reqs=0\n", real, StringComparison.Ordinal);
        Assert.Contains("  block.count=4\n  block.0.name=vda\n  block.0.path=DIR/sb/vda.qcow2\n", real, StringComparison.Ordinal);
        Assert.Contains("  block.1.name=vda\n  block.1.path=DIR/sb/base.qcow2\n  block.1.backingIndex=3\n", real, StringComparison.Ordinal);
        Assert.Contains("error: invalid argument: invalid path: vdz\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: domain is not running\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        await virsh.RunAsync("define", await TwoDiskDomain.CreateAsync(directory, "sq"));
        await virsh.RunAsync("define", await TwoDiskDomain.CreateAsync(directory, "so"));

        // sb's vda is an overlay over a base image, itself over a raw one: a chain of three.
        var sb = await TwoDiskDomain.CreateAsync(directory, "sb");
        var images = Path.Combine(directory, "sb");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", Path.Combine(images, "root.raw"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", Path.Combine(images, "root.raw"), "-F", "raw", Path.Combine(images, "base.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", Path.Combine(images, "base.qcow2"), "-F", "qcow2", Path.Combine(images, "vda.qcow2"), "16M");
        await virsh.RunAsync("define", sb);
        await virsh.RunAsync("start", "sb", "--paused");
        await virsh.RunAsync("domstats", "sb", "--block", "--backing");
        await virsh.RunAsync("domstats", "sb", "--block");
        await virsh.RunAsync("destroy", "sb");
        await virsh.RunAsync("domstats", "sb", "--block", "--backing");
        await virsh.RunAsync("undefine", "sb");
        await virsh.RunAsync("start", "sq", "--paused");
        await virsh.RunAsync("nodeinfo");
        await virsh.RunAsync("domblkstat", "sq", "vda");
        await virsh.RunAsync("domblkstat", "sq");
        await virsh.RunAsync("domblkstat", "sq", "vdb", "--human");
        await virsh.RunAsync("domblkstat", "sq", Path.Combine(directory, "sq", "vdb.qcow2"));
        await virsh.RunAsync("domblkstat", "sq", "vdz");
        await virsh.RunAsync("domblkstat", "so", "vda");
        await virsh.RunAsync("domblkerror", "sq");
        await virsh.RunAsync("domblkerror", "so");
        await virsh.RunAsync("domstats", "sq", "--state", "--block");
        await virsh.RunAsync("domstats", "so", "--block");
        await virsh.RunAsync("domstats", "--state", "--list-inactive");
        await virsh.RunAsync("domstats", "--block", "--list-running");
        await virsh.RunAsync("destroy", "sq");
        await virsh.RunAsync("undefine", "sq");
        await virsh.RunAsync("undefine", "so");
        return virsh.Mask(directory);
    }
}
