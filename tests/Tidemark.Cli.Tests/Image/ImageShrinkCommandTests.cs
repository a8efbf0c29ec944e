using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image resize --shrink</c> of qcow2 images against <c>qemu-img resize --shrink</c>
/// on copies of the same image (the steps of <see cref="ImageResizeCommandTests"/>): the same
/// exit status, output and error lines at each step, then the same guest content
/// (<c>qemu-img compare</c>), <c>qemu-img check</c> clean, the same
/// <c>qemu-img info --output=json</c> and, where no bitmap store moves the file's end, the
/// same file length and <c>actual-size</c>: the shrink frees what QEMU's frees, punches what
/// QEMU's discards and cuts the file where QEMU's does.
/// </summary>
public sealed class ImageShrinkCommandTests
{
    // The image is 1 MiB with data at 0-64k, 200k-208k and 900k-1M: the steps cut through
    // data, inside a cluster, past whole L2 tables (512-byte clusters), and grow again.
    private static readonly string[] Steps =
    [
        "FILE 600K",
        "--shrink FILE 1000001",
        "--shrink FILE 1000448",
        "--shrink FILE -- -300K",
        "FILE +2M",
        "--shrink FILE 204800",
        "--shrink FILE 65536",
        "--shrink FILE 512",
        "--shrink FILE 0",
    ];

    [Theory]
    [InlineData("0.10", 512, false)]
    [InlineData("0.10", 65536, false)]
    [InlineData("1.1", 512, false)]
    [InlineData("1.1", 512, true)]
    [InlineData("1.1", 4096, false)]
    [InlineData("1.1", 4096, true)]
    [InlineData("1.1", 65536, false)]
    [InlineData("1.1", 65536, true)]
    [InlineData("1.1", 2097152, true)]
    public async Task Qcow2Shrink_GivesWhatQemuImgResizeShrinkGives(string compat, int clusterSize, bool bitmaps)
    {
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"compat={compat},cluster_size={clusterSize}", original, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0x11 200k 8k", "-c", "write -P 0x33 900k 124k", original);
        if (clusterSize <= 65536)
        {
            // A compressed cluster takes a whole cluster: one at 128k where it fits in 1 MiB.
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", $"write -c -P 0x44 128k {clusterSize}", original);
        }

        if (bitmaps)
        {
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", original, "b0");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "512", "--disable", original, "fine");
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x12 200k 8k", "-c", "write -P 0x34 1000k 8k", original);
        }

        var (qemu, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", Steps);

        await AssertSameAsync(qemu, tidemark, sameLength: !bitmaps, clusterSize);
    }

    [Theory]
    [InlineData("0.10", 65536)]
    [InlineData("1.1", 512)]
    [InlineData("1.1", 65536)]
    public async Task Qcow2ShrinkOverABackingFile_GivesWhatQemuImgGives(string compat, int clusterSize)
    {
        using var dir = new TempDirectory();
        var options = $"compat={compat},cluster_size={clusterSize}";
        var backing = dir.File("base.qcow2");
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, backing, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 1M", backing);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "base.qcow2", "-F", "qcow2", original);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 100k 64k", "-c", "write -z 400k 64k", "-c", "write -P 0x33 700k 200k", original);

        var (qemu, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", ["--shrink FILE 768K", "--shrink FILE 300K"]);

        await AssertSameAsync(qemu, tidemark, sameLength: true, clusterSize);
    }

    [Fact]
    public async Task Qcow2ShrinkOfALargeSparseImage_DropsTablesAndRefcountBlocksAsQemuDoes()
    {
        // 512-byte clusters: an L2 table maps 32 KiB and a refcount block counts 128 KiB of
        // the file, so 12 MiB of data past the new end leave hundreds of each unused.
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", original, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x66 10M 12M", "-c", "write -P 0x77 1M 64k", original);

        var (qemu, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", ["--shrink FILE 2M"]);

        await AssertSameAsync(qemu, tidemark, sameLength: true, clusterSize: 512);
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(65536)]
    public async Task Qcow2ShrinkFreeingClustersBeforeTheFileEnd_PunchesThemOutAsQemuImgDoes(int clusterSize)
    {
        // The data past the new end was written first, so its clusters lie before the kept
        // data in the file: the shrink cannot cut them off, QEMU discards them.
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", original, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x66 2M 1M", "-c", "write -P 0x5a 0 256k", original);
        var before = await ActualSizeAsync(original);

        var (qemu, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", ["--shrink FILE 1M"]);

        await AssertSameAsync(qemu, tidemark, sameLength: true, clusterSize: 65536);
        var after = await ActualSizeAsync(tidemark);
        Assert.True(after <= before - (1 << 19), $"actual-size {before} before the shrink, {after} after");
    }

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    [InlineData(65536)]
    public async Task Qcow2V3WithInternalSnapshots_ShrinksAndGrowsAsQemuImgDoes_SnapshotsKept(int clusterSize)
    {
        // Two snapshots over data on both sides of each new end, with writes after each, so
        // the active L2 tables past the end are shared with a snapshot (dropped from the
        // active path only) and the last one kept is shared too (copied before it changes).
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", original, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0x11 200k 8k", "-c", "write -P 0x33 700k 300k", original);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "s1", original);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x66 32k 8k", "-c", "write -P 0x77 800k 64k", "-c", "write -z 900k 16k", original);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "s2", original);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x88 500k 8k", original);

        var (qemu, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", ["--shrink FILE 600K", "FILE 2M", "--shrink FILE 300K", "FILE +1M"]);

        await AssertSameAsync(qemu, tidemark, sameLength: true, clusterSize);

        // Each snapshot reads as it did (qemu-img reads one at the image's current size, its
        // own 1 MiB first, zeroes after), and as on qemu-img's copy.
        foreach (var snapshot in new[] { "s1", "s2" })
        {
            var before = await SnapshotBytesAsync(dir, original, snapshot);
            var after = await SnapshotBytesAsync(dir, tidemark, snapshot);
            Assert.Equal(before, after.AsSpan(0, before.Length).ToArray());
            Assert.True(after.AsSpan(before.Length).IndexOfAnyExcept((byte)0) < 0, $"snapshot {snapshot} reads data past its own size");
            Assert.Equal(await SnapshotBytesAsync(dir, qemu, snapshot), after);
        }
    }

    [Fact]
    public async Task Qcow2ShrinkWithInternalSnapshots_IsRefusedAsQemuRefusesV2()
    {
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", original, "1M");
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "s1", original);
        var before = await File.ReadAllBytesAsync(original, TestContext.Current.CancellationToken);

        var (_, tidemark) = await ImageResizeCommandTests.RunStepsAsync(dir, original, "qcow2", ["--shrink FILE 512K", "FILE 2M"]);

        Assert.Equal(before, await File.ReadAllBytesAsync(tidemark, TestContext.Current.CancellationToken));
    }

    private static async Task<byte[]> SnapshotBytesAsync(TempDirectory dir, string image, string snapshot)
    {
        var raw = dir.File($"{Path.GetFileNameWithoutExtension(image)}-{snapshot}.raw");
        File.Delete(raw);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", "-l", $"snapshot.name={snapshot}", image, raw);
        return await File.ReadAllBytesAsync(raw, TestContext.Current.CancellationToken);
    }

    private static async Task<long> ActualSizeAsync(string file)
        => System.Text.Json.Nodes.JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", file))!["actual-size"]!.GetValue<long>();

    private static async Task<string> CheckAsync(string file)
    {
        var check = System.Text.Json.Nodes.JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "check", "--output=json", file))!.AsObject();
        check.Remove("filename");
        return check.ToJsonString();
    }

    private static async Task AssertSameAsync(string qemu, string tidemark, bool sameLength, int clusterSize)
    {
        await Peer.RunCheckedAsync("qemu-img", "check", tidemark);
        Assert.Equal(await ImageResizeCommandTests.InfoAsync(qemu), await ImageResizeCommandTests.InfoAsync(tidemark));
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", qemu, tidemark);
        if (sameLength)
        {
            // The same clusters freed and kept: the same file length and the same counts in
            // qemu-img check (allocated, fragmented, compressed clusters, image end offset).
            Assert.Equal(new FileInfo(qemu).Length, new FileInfo(tidemark).Length);
            Assert.Equal(await CheckAsync(qemu), await CheckAsync(tidemark));

            // The clusters freed for good are punched out of both files (QEMU's discards of
            // them reach the file), so both hold the same blocks. Where a cluster is smaller
            // than a 64 KiB one, the blocks QEMU keeps also depend on how its discards and
            // metadata writes fall around file system blocks, which is not reproduced.
            if (clusterSize >= 65536)
            {
                Assert.Equal(await ActualSizeAsync(qemu), await ActualSizeAsync(tidemark));
            }
        }

        // The image takes writes after the shrink and stays clean.
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 512", tidemark);
        await Peer.RunCheckedAsync("qemu-img", "check", tidemark);
    }
}
