using System.Buffers.Binary;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// Internal snapshots made by <c>qemu-img snapshot -c</c>, as <c>tidemark image info</c> shows
/// them next to <c>qemu-img info</c>: the whole human output and the whole JSON (the
/// "Snapshot list:" table, the <c>snapshots</c> array), with and without
/// <c>--backing-chain</c>; and snapshot tables that break the format, refused with an error
/// that names the entry.
/// </summary>
public sealed class ImageSnapshotInfoTests
{
    [Theory]
    [InlineData("1.1", 65536)]
    [InlineData("0.10", 4096)]
    [InlineData("1.1", 512)]
    public async Task Info_ShowsSnapshotsAsQemuImgInfo(string compat, int clusterSize)
    {
        using var dir = new TempDirectory();
        var image = dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"compat={compat},cluster_size={clusterSize}", image, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", image);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "first", image);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 32k 64k", image);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "a tag longer than sixteen characters", image);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "3", image);

        await AssertSameInfoAsync(dir, [image]);
        await AssertSameInfoAsync(dir, ["--output=json", image]);
        await AssertSameListAsync(image);
    }

    [Fact]
    public async Task SnapshotList_OfImagesWithoutSnapshots_PrintsNothingAsQemuImg()
    {
        using var dir = new TempDirectory();
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", dir.File("none.qcow2"), "1M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", dir.File("r.img"), "1M");

        await AssertSameListAsync(dir.File("none.qcow2"));
        await AssertSameListAsync(dir.File("r.img"));
        await AssertSameListAsync(dir.File("missing.qcow2"));
    }

    [Fact]
    public async Task InfoBackingChain_ShowsEachLayersSnapshots()
    {
        using var dir = new TempDirectory();
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "2M");
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "base-snap", dir.File("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "top-snap", dir.File("top.qcow2"));

        await AssertSameInfoAsync(dir, ["--backing-chain", dir.File("top.qcow2")]);
        await AssertSameInfoAsync(dir, ["--backing-chain", "--output=json", dir.File("top.qcow2")]);
    }

    /// <summary>
    /// Damaged tables read as QEMU 7.2 reads them at open (qcow2_do_read_snapshots): too much extra
    /// data refuses the image naming the entry (a v3 entry shortened to 8 bytes of extra data makes
    /// the next entry read from the wrong place, so QEMU names entry 1); a name running past the
    /// end of the file and a misplaced snapshot L1 table open and list (the check reports the L1).
    /// </summary>
    [Theory]
    [InlineData("extra", "Too much extra metadata in snapshot table entry 0")]
    [InlineData("incomplete", "Too much extra metadata in snapshot table entry 1")]
    [InlineData("past-end", null)]
    [InlineData("l1", null)]
    public async Task DamagedSnapshotTable_ReadsAsQemuReadsIt(string damage, string? expected)
    {
        using var dir = new TempDirectory();
        var image = dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "1M");
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "one", image);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "two", image);
        var bytes = await File.ReadAllBytesAsync(image, TestContext.Current.CancellationToken);
        var table = (int)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(64));
        var second = table + ((40 + 24 + 1 + 3 + 7) & ~7);
        switch (damage)
        {
            case "extra":
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(table + 36), 4096);
                break;
            case "incomplete":
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(table + 36), 8);
                break;
            case "past-end":
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(second + 14), 65535);
                break;
            case "l1":
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(table), 0x10200);
                break;
        }

        await File.WriteAllBytesAsync(image, bytes, TestContext.Current.CancellationToken);
        if (expected is null)
        {
            await AssertSameInfoAsync(dir, [image]);
            return;
        }

        var qemu = await Peer.RunAsync("qemu-img", ["info", image]);
        Assert.Contains(expected, qemu.Stderr, StringComparison.Ordinal);
        var run = await CliRun.RunAsync("image", "info", image);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains(expected, run.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, run.Stdout);
    }

    private static async Task AssertSameInfoAsync(TempDirectory dir, string[] args)
    {
        var qemu = await Peer.RunAsync("qemu-img", ["info", .. args], workingDirectory: dir.Path);
        var tidemark = await CliRun.RunAsync(["image", "info", .. args], dir.Path);
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal((qemu.ExitCode, qemu.Stderr), (tidemark.ExitCode, tidemark.Stderr));
        Assert.Equal(WithoutDiskSize(qemu.Stdout), WithoutDiskSize(tidemark.Stdout));
    }

    private static async Task AssertSameListAsync(string image)
    {
        var qemu = await Peer.RunAsync("qemu-img", ["snapshot", "-l", image]);
        var tidemark = await CliRun.RunAsync("image", "snapshot", "-l", image);
        Assert.Equal((qemu.ExitCode, qemu.Stdout), (tidemark.ExitCode, tidemark.Stdout));
        Assert.Equal(qemu.Stderr.Replace("qemu-img: ", "error: ", StringComparison.Ordinal), tidemark.Stderr);
    }

    // The allocated bytes depend on how the file system placed the file, not on the image.
    private static string WithoutDiskSize(string output)
        => string.Join('\n', output.Split('\n').Where(l => !l.StartsWith("disk size:", StringComparison.Ordinal) && !l.TrimStart().StartsWith("\"actual-size\":", StringComparison.Ordinal)));
}
