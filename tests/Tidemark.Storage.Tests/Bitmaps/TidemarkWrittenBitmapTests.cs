using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Storage.Tests.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// Bitmaps that Tidemark records and stores: QEMU shows the same names, granularities and
/// flags, serves the same bits over NBD, finds the image clean, and keeps recording into them.
/// </summary>
public sealed class TidemarkWrittenBitmapTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(65536, 1)]
    [InlineData(4096, 2)]
    [InlineData(512, 3)]
    [InlineData(2 << 20, 4)]
    public async Task WritesThroughTidemark_AreTheBitsQemuServes(int clusterSize, int seed)
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        const long Size = (48 << 20) + 512;
        var defaultGranularity = (long)Math.Clamp(clusterSize, 4096, 65536); // QEMU's default granularity (formats.md §2.5)
        var random = new Random(seed);
        var expected = new Dictionary<string, List<DirtyRun>>();
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = clusterSize }, Ct))
        {
            await image.Bitmaps.AddAsync("b0", cancellationToken: Ct);
            await image.Bitmaps.AddAsync("wide", 1 << 20, cancellationToken: Ct);
            await image.Bitmaps.AddAsync("fine", 512, cancellationToken: Ct);
            await image.Bitmaps.AddAsync("frozen", enabled: false, cancellationToken: Ct);
            await image.Bitmaps.AddAsync("transient", persistent: false, cancellationToken: Ct);
            for (var i = 0; i < 40; i++)
            {
                var offset = random.NextInt64(Size - 1);
                var length = Math.Min(Size - offset, 1 + random.NextInt64(300_000));
                switch (random.Next(3))
                {
                    case 0:
                        await image.WriteAsync(offset, new byte[length], cancellationToken: Ct);
                        break;
                    case 1:
                        await image.WriteZeroesAsync(offset, length, WriteFlags.MayUnmap, Ct);
                        break;
                    default:
                        await image.DiscardAsync(offset, length, Ct);
                        break;
                }
            }

            foreach (var bitmap in image.Bitmaps.Bitmaps)
            {
                expected[bitmap.Name] = bitmap.Bitmap.Runs();
            }

            Assert.Equal(0, image.Bitmaps.Get("frozen").Bitmap.DirtyBitCount);
            Assert.True(image.Bitmaps.Get("b0").Bitmap.DirtyBitCount > 0);
        }

        await ImageContent.AssertCleanAsync(path);
        Assert.Equal(
            [("b0", defaultGranularity, "auto"), ("wide", 1L << 20, "auto"), ("fine", 512L, "auto"), ("frozen", defaultGranularity, "")],
            await QemuBitmapListAsync(path));

        await using var export = await QemuNbdExport.StartAsync(path, dir.File("nbd.sock"), "b0", "wide", "fine", "frozen");
        foreach (var name in new[] { "b0", "wide", "fine", "frozen" })
        {
            Assert.Equal(expected[name], await export.DirtyMapAsync(name));
        }
    }

    [Fact]
    public async Task OpenReadWrite_MarksInUseOnDisk_CleanCloseClearsIt()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "--disable", path, "b1");

        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, Ct))
        {
            await image.WriteAsync(5 << 20, new byte[4096], cancellationToken: Ct);
            // While Tidemark has it open read-write, QEMU (-U: without the lock) sees IN_USE.
            Assert.Equal([("b0", 65536L, "in-use,auto"), ("b1", 65536L, "in-use")], await QemuBitmapListAsync(path, "-U"));
        }

        Assert.Equal([("b0", 65536L, "auto"), ("b1", 65536L, "")], await QemuBitmapListAsync(path));
        await ImageContent.AssertCleanAsync(path);

        // Read-only opens leave the flags alone.
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: true, Ct))
        {
            Assert.Equal([("b0", 65536L, "auto"), ("b1", 65536L, "")], await QemuBitmapListAsync(path, "-U"));
            Assert.Equal([new Storage.Bitmaps.BitmapExtent(5 << 20, 65536, true)], image.Bitmaps.Get("b0").Bitmap.EnumerateDirtyExtents(0, 64 << 20));
        }
    }

    [Fact]
    public async Task ImageNeverClosed_LeavesBitmapsInconsistent()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 64 << 20 }, Ct);
        await image.Bitmaps.AddAsync("b0", cancellationToken: Ct);
        await image.DisposeAsync();

        // Opened read-write and written, then abandoned without a clean close, as a crash would.
        var abandoned = await Qcow2Image.OpenAsync(path, readOnly: false, Ct);
        await abandoned.WriteAsync(0, new byte[65536], cancellationToken: Ct);
        await abandoned.FlushAsync(Ct);

        var space = ReadOnlyClusterSpace.Open(path);
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);
        Assert.True(set.Get("b0").Inconsistent);
        Assert.Equal([("b0", 65536L, "in-use,auto")], await QemuBitmapListAsync(path, "-U"));
        var check = await Peer.RunAsync("qemu-img", ["check", "-U", "--output=json", path]);
        Assert.Equal(0, check.ExitCode);
        GC.KeepAlive(abandoned);
    }

    [Fact]
    public async Task QemuWritesOnTopOfATidemarkBitmap_RecordsIntoIt()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 64 << 20 }, Ct))
        {
            await image.Bitmaps.AddAsync("b0", cancellationToken: Ct);
            await image.WriteAsync(1 << 20, new byte[4096], cancellationToken: Ct);
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 8M 64k", "-c", "write -z 9M 64k", path);
        await ImageContent.AssertCleanAsync(path);

        await using var reopened = await Qcow2Image.OpenAsync(path, readOnly: true, Ct);
        Assert.Equal(
            [new(1 << 20, 65536, true), new(8 << 20, 65536, true), new Storage.Bitmaps.BitmapExtent(9 << 20, 65536, true)],
            reopened.Bitmaps.Get("b0").Bitmap.EnumerateDirtyExtents(0, 64 << 20).ToList());
    }

    [Fact]
    public async Task RepeatedReadWriteCycles_LeakNothing()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", path, "256M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "512", path, "b0");
        for (var cycle = 0; cycle < 5; cycle++)
        {
            await using var image = await Qcow2Image.OpenAsync(path, readOnly: false, Ct);
            await image.WriteAsync(cycle * (40L << 20), new byte[8192], cancellationToken: Ct);
        }

        var check = await ImageContent.AssertCleanAsync(path);
        Assert.False(check.TryGetProperty("leaks", out _), check.ToString());
        await using var export = await QemuNbdExport.StartAsync(path, dir.File("nbd.sock"), "b0");
        var dirty = (await export.DirtyMapAsync("b0")).Where(e => e.Dirty).ToList();
        Assert.Equal(Enumerable.Range(0, 5).Select(c => new DirtyRun(c * (40L << 20), 8192, true)), dirty);
    }

    [Fact]
    public async Task AddingToAVersion2Image_IsRefusedAsQemuDoes()
    {
        using var dir = new TempDirectory();
        var path = dir.File("v2.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", path, "64M");
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: false, Ct);
        var error = await Assert.ThrowsAsync<StorageException>(async () => await image.Bitmaps.AddAsync("b0", cancellationToken: Ct));
        Assert.Equal("Cannot store dirty bitmaps in qcow2 v2 files", error.Message);

        // A transient bitmap needs no room in the file.
        await image.Bitmaps.AddAsync("t", persistent: false, cancellationToken: Ct);
        await image.WriteAsync(0, new byte[512], cancellationToken: Ct);
        Assert.Equal(1, image.Bitmaps.Get("t").Bitmap.DirtyBitCount);
    }

    internal static async Task<List<(string Name, long Granularity, string Flags)>> QemuBitmapListAsync(string path, params string[] options)
    {
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", ["info", .. options, "--output=json", path])).RootElement;
        var data = info.GetProperty("format-specific").GetProperty("data");
        if (!data.TryGetProperty("bitmaps", out var bitmaps))
        {
            return [];
        }

        return bitmaps.EnumerateArray()
            .Select(b => (b.GetProperty("name").GetString()!, b.GetProperty("granularity").GetInt64(), string.Join(',', b.GetProperty("flags").EnumerateArray().Select(f => f.GetString()))))
            .ToList();
    }
}
