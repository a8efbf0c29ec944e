using System.Text.Json;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// Bitmaps that QEMU itself recorded (<c>qemu-img bitmap --add</c>, then <c>qemu-io</c>
/// writes) read back through <see cref="Qcow2BitmapSet"/> exactly as <c>qemu-nbd -B</c> +
/// <c>nbdinfo --map=qemu:dirty-bitmap:NAME</c> serve them.
/// </summary>
public sealed class QemuRecordedBitmapTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(65536, "64M")]
    [InlineData(4096, "40M")]
    [InlineData(512, "3M")]
    [InlineData(2097152, "100M")]
    [InlineData(65536, "67108865")] // one byte past a granularity boundary: a clipped last bit
    public async Task QemuRecordedBitmaps_EqualWhatQemuNbdServes(int clusterSize, string size)
    {
        using var dir = new TempDirectory();
        var image = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", image, size);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", image, "wide");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "512", image, "fine");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "frozen");
        // Written, zeroed and discarded ranges all dirty the enabled bitmaps; "frozen" is
        // disabled after the first write, so it must differ from the others.
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4k", image);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--disable", image, "frozen");
        await Peer.RunCheckedAsync(
            "qemu-io", "-f", "qcow2",
            "-c", "write -P 0x22 192k 64k",
            "-c", "write -z 1M 128k",
            "-c", "discard 1536k 4k",
            "-c", "write -P 0x33 2047k 3k",
            image);

        var space = ReadOnlyClusterSpace.Open(image);
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);
        Assert.Equal(["b0", "wide", "fine", "frozen"], set.Bitmaps.Select(b => b.Name));

        await using var export = await QemuNbdExport.StartAsync(image, dir.File("nbd.sock"), "b0", "wide", "fine", "frozen");
        foreach (var bitmap in set.Bitmaps)
        {
            var expected = await export.DirtyMapAsync(bitmap.Name);
            var actual = QemuNbdExport.Coalesce(bitmap.Bitmap.EnumerateExtents(0, space.VirtualSize));
            Assert.Equal(expected, actual);
            Assert.Contains(actual, e => e.Dirty);
        }

        Assert.NotEqual(
            QemuNbdExport.Coalesce(set.Get("frozen").Bitmap.EnumerateExtents(0, space.VirtualSize)),
            QemuNbdExport.Coalesce(set.Get("b0").Bitmap.EnumerateExtents(0, space.VirtualSize)));
    }

    [Fact]
    public async Task QemuBitmapFlagsAndGranularity_MatchQemuImgInfo()
    {
        using var dir = new TempDirectory();
        var image = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", image, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", image, "b1");

        var space = ReadOnlyClusterSpace.Open(image);
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);

        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", image));
        var expected = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").EnumerateArray()
            .Select(b => (Name: b.GetProperty("name").GetString(), Granularity: b.GetProperty("granularity").GetInt64(), Flags: string.Join(',', b.GetProperty("flags").EnumerateArray().Select(f => f.GetString()))))
            .ToList();
        var actual = set.Bitmaps.Select(b => (Name: (string?)b.Name, b.Granularity, Flags: FlagWords(b.Flags))).ToList();
        Assert.Equal(expected, actual);
        Assert.True(set.Get("b0").Enabled);
        Assert.False(set.Get("b1").Enabled);
    }

    [Fact]
    public async Task SpecExample_SerializesToTheBytesQemuWrote()
    {
        // formats.md §2.4: writes to guest clusters 3, 16, 32 and 33 give data bytes 08 00 01 00 03.
        using var dir = new TempDirectory();
        var image = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", image, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 192k 64k", "-c", "write 1M 64k", "-c", "write 2M 128k", image);

        var space = ReadOnlyClusterSpace.Open(image);
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);
        var data = new byte[8];
        set.Get("b0").Bitmap.CopyDataTo(0, data);
        Assert.Equal(new byte[] { 0x08, 0x00, 0x01, 0x00, 0x03, 0, 0, 0 }, data);
        Assert.Equal(4, set.Get("b0").Bitmap.DirtyBitCount);
    }

    [Fact]
    public async Task QemuIoAbort_LeavesBitmapsThatLoadAsInconsistent()
    {
        using var dir = new TempDirectory();
        var image = dir.File("crash.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", image, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "--disable", image, "b1");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", image);
        // qemu-io -c abort kills itself with SIGABRT: a non-zero exit is the point.
        var crash = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x22 3M 64k", "-c", "abort", image]);
        Assert.NotEqual(0, crash.ExitCode);

        var space = ReadOnlyClusterSpace.Open(image);
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);

        Assert.All(set.Bitmaps, b => Assert.True(b.Inconsistent));
        Assert.Equal(BitmapEntryFlags.InUse | BitmapEntryFlags.Auto, set.Get("b0").Flags);
        Assert.Equal(BitmapEntryFlags.InUse, set.Get("b1").Flags);
        var error = Assert.Throws<StorageException>(() => set.Get("b0").Bitmap);
        Assert.Equal(StorageErrorReason.BitmapInconsistent, error.Reason);
        Assert.Contains("'b0' is inconsistent", error.Message, StringComparison.Ordinal);

        // QEMU agrees: it shows the same flags and refuses to use the bitmap.
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", image));
        var qemuFlags = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps")[0].GetProperty("flags")
            .EnumerateArray().Select(f => f.GetString()).ToList();
        Assert.Equal(["in-use", "auto"], qemuFlags);
    }

    internal static string FlagWords(BitmapEntryFlags flags) =>
        string.Join(',', new[] { (BitmapEntryFlags.InUse, "in-use"), (BitmapEntryFlags.Auto, "auto") }.Where(f => flags.HasFlag(f.Item1)).Select(f => f.Item2));
}
