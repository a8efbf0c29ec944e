using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// An overlay opened without its chain (<see cref="Qcow2Image.OpenDetachedAsync"/>, as a
/// push job writes an incremental target over the live disk) still has its backing file behind
/// every unallocated cluster: zeroing or discarding a cluster must hide the backing data once
/// the chain is opened again, which QEMU then reads (the zero flag, qcow2.txt "Standard Cluster
/// Descriptor", bit 0).
/// </summary>
public sealed class DetachedOverlayTests
{
    [Fact]
    public async Task ZeroesAndDiscards_OfUnallocatedClusters_HideTheBackingData_WhenQemuOpensTheChain()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", dir.File("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("top.qcow2"));

        await using (var top = await Qcow2Image.OpenDetachedAsync(dir.File("top.qcow2"), readOnly: false, ct))
        {
            await top.WriteZeroesAsync(0, 64 * 1024, cancellationToken: ct);
            await top.WriteZeroesAsync(1 << 20, 128 * 1024, WriteFlags.MayUnmap, ct);
            await top.DiscardAsync(2 << 20, 64 * 1024, ct);
            await top.FlushAsync(ct);
        }

        // Through the chain: the three ranges read as zeroes, the rest still the base's data.
        await Peer.RunCheckedAsync(
            "qemu-io", "-r", "-f", "qcow2",
            "-c", "read -P 0 0 64k",
            "-c", "read -P 0x11 64k 960k",
            "-c", "read -P 0 1M 128k",
            "-c", "read -P 0x11 1152k 896k",
            "-c", "read -P 0 2M 64k",
            "-c", "read -P 0x11 2112k 1984k",
            dir.File("top.qcow2"));
        var check = await Peer.RunAsync("qemu-img", ["check", dir.File("top.qcow2")]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
    }
}
