using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Data clusters are checked against the host file's holes only in an image that looks
/// metadata-preallocated, as qemu-img map decides it (qcow2_detect_metadata_preallocation, once
/// per open image): compared with <c>qemu-img map --output=json</c> on images of both kinds.
/// </summary>
public sealed class MetadataPreallocationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PartlyWrittenClusters_OfAnOrdinaryImage_AreDataThroughout()
    {
        // The file system keeps holes inside both clusters (qcow2 zeroes the rest of a new
        // cluster with fallocate), but the file's allocation matches the clusters in use.
        using var dir = new TempDirectory();
        var path = dir.File("m.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", path, "1G");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 300M 4k", "-c", "write -P 2 500M 8k", path);

        var expected = await QemuMapAsync(path);
        Assert.DoesNotContain(expected, e => e.Data && e.Zero);
        Assert.Contains((300L << 20, 65536L, true, false, true), expected);
        Assert.Equal(expected, await OursAsync(path));
    }

    [Fact]
    public async Task PartlyWrittenClusters_OfAMetadataPreallocatedImage_SplitAtTheHoles()
    {
        using var dir = new TempDirectory();
        var path = dir.File("p.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", path, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 4k", "-c", "write -P 2 5M 8k", path);

        var expected = await QemuMapAsync(path);
        Assert.Contains((1L << 20, 4096L, true, false, true), expected);
        Assert.Contains(((1L << 20) + 4096, (4L << 20) - 4096, true, true, true), expected);
        Assert.Equal(expected, await OursAsync(path));
    }

    [Fact]
    public async Task HolesPunchedUnderDataClusters_MakeTheImageLookPreallocated_ForTheNextOpenOnly()
    {
        using var dir = new TempDirectory();
        var path = dir.File("q.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", path, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 1M", path);
        var before = await QemuMapAsync(path);
        Assert.Equal(before, await OursAsync(path));
        var host = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path)).RootElement[0].GetProperty("offset").GetInt64();

        await using (var open = await Qcow2Image.OpenAsync(path, readOnly: true, Ct))
        {
            // The first query decides; it reads no data cluster, so no lseek answer is kept either.
            Assert.Equal(new BlockExtent(2 << 20, 2 << 20, ExtentKind.Hole | ExtentKind.Zero, 0), Assert.Single(await open.GetExtentsAsync(2 << 20, 2 << 20, Ct)));

            // Keep 4 KiB of each of the 16 data clusters: far fewer clusters are allocated than in use.
            for (var i = 0; i < 16; i++)
            {
                await Peer.RunCheckedAsync("fallocate", "-p", "-o", (host + (i * 65536L) + 4096).ToString(System.Globalization.CultureInfo.InvariantCulture), "-l", "61440", path);
            }

            // Decided at the first query of this open image, as QEMU decides it once per open.
            Assert.Equal(new BlockExtent(0, 1 << 20, ExtentKind.Data, 1), Assert.Single(await open.GetExtentsAsync(0, 1 << 20, Ct)));
        }

        var after = await QemuMapAsync(path);
        Assert.Contains((4096L, 61440L, true, true, true), after);
        Assert.Equal(after, await OursAsync(path));
    }

    /// <summary>qemu-img map's guest view: runs of the same kind merged (host offsets not compared).</summary>
    private static async Task<List<(long Start, long Length, bool Present, bool Zero, bool Data)>> QemuMapAsync(string path)
    {
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path)).RootElement;
        var list = new List<(long Start, long Length, bool Present, bool Zero, bool Data)>();
        foreach (var e in map.EnumerateArray())
        {
            Add(list, (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("present").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("data").GetBoolean()));
        }

        return list;
    }

    private static async Task<List<(long Start, long Length, bool Present, bool Zero, bool Data)>> OursAsync(string path)
    {
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, Ct);
        var list = new List<(long Start, long Length, bool Present, bool Zero, bool Data)>();
        for (long at = 0; at < image.VirtualSize;)
        {
            var part = await image.GetExtentsAsync(at, image.VirtualSize - at, Ct);
            foreach (var e in part)
            {
                Add(list, (e.Offset, e.Length, e.Depth != 0, (e.Kind & ExtentKind.Zero) != 0, (e.Kind & ExtentKind.Hole) == 0));
            }

            at = part[^1].End;
        }

        return list;
    }

    private static void Add(List<(long Start, long Length, bool Present, bool Zero, bool Data)> list, (long Start, long Length, bool Present, bool Zero, bool Data) e)
    {
        if (list.Count > 0 && list[^1].Start + list[^1].Length == e.Start && (list[^1].Present, list[^1].Zero, list[^1].Data) == (e.Present, e.Zero, e.Data))
        {
            list[^1] = list[^1] with { Length = list[^1].Length + e.Length };
        }
        else
        {
            list.Add(e);
        }
    }
}
