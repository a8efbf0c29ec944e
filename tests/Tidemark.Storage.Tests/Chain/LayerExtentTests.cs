using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// <see cref="Qcow2Image.GetExtentsAsync(long, long, int, CancellationToken)"/>: the allocation
/// of the top layers of a chain only, on a chain qemu-io wrote (base 8 MiB, mid 8 MiB, top 12 MiB
/// at 64 KiB clusters), against the layout written and against <c>qemu-img map</c> of the top
/// opened without its backing file.
/// </summary>
public sealed class LayerExtentTests
{
    private const long K = 1024;
    private const long M = 1024 * 1024;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task TopOnly_ReportsWhatTheTopAllocates_AndLeavesTheRestToTheBackingFile()
    {
        using var dir = new TempDirectory();
        var top = await CreateChainAsync(dir);

        await using var image = await Qcow2Image.OpenAsync(top, readOnly: true, Ct);
        var extents = await AllExtentsAsync(image, layers: 1);

        (long, long, ExtentKind, int)[] expected =
        [
            (0, 512 * K, ExtentKind.Hole, 0),                              // base's data shows through
            (512 * K, 128 * K, ExtentKind.Data, 1),                        // written in the top
            (640 * K, 896 * K, ExtentKind.Hole, 0),                        // mid's data shows through
            (1536 * K, 64 * K, ExtentKind.Hole | ExtentKind.Zero, 1),      // zero cluster over mid's data
            (1600 * K, (3 * M) - (1600 * K), ExtentKind.Hole, 0),
            (3 * M, 64 * K, ExtentKind.Data, 1),
            ((3 * M) + (64 * K), (5 * M) - (64 * K), ExtentKind.Hole, 0),
            (8 * M, 4 * M, ExtentKind.Hole | ExtentKind.Zero, 0),          // past the backing file's end: zeroes
        ];
        Assert.Equal(expected, extents.Select(e => (e.Offset, e.Length, e.Kind, e.Depth)).ToArray());

        // QEMU's view of the top alone (backing=null): the same allocated and data ranges.
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", $$"""json:{"driver": "qcow2", "file": {"driver": "file", "filename": "{{top}}"}, "backing": null}""")).RootElement;
        var qemu = Merge(map.EnumerateArray().Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("start").GetInt64() + e.GetProperty("length").GetInt64(), e.GetProperty("present").GetBoolean(), e.GetProperty("data").GetBoolean())));
        var tidemark = Merge(extents.Select(e => (e.Offset, e.End, e.Depth == 1, (e.Kind & ExtentKind.Hole) == 0)));
        Assert.Equal(qemu, tidemark);
    }

    [Fact]
    public async Task TwoLayers_ReportTheMiddleLayersAllocationAtDepthTwo_AndNothingBelow()
    {
        using var dir = new TempDirectory();
        var top = await CreateChainAsync(dir);

        await using var image = await Qcow2Image.OpenAsync(top, readOnly: true, Ct);
        var extents = await AllExtentsAsync(image, layers: 2);

        (long, long, ExtentKind, int)[] expected =
        [
            (0, 512 * K, ExtentKind.Hole, 0),                              // base is not consulted
            (512 * K, 128 * K, ExtentKind.Data, 1),
            (640 * K, 384 * K, ExtentKind.Hole, 0),
            (1 * M, 512 * K, ExtentKind.Data, 2),                          // mid's data
            (1536 * K, 64 * K, ExtentKind.Hole | ExtentKind.Zero, 1),
            (1600 * K, 448 * K, ExtentKind.Data, 2),
            (2 * M, 1 * M, ExtentKind.Hole, 0),
            (3 * M, 64 * K, ExtentKind.Data, 1),
            ((3 * M) + (64 * K), (5 * M) - (64 * K), ExtentKind.Hole, 0),
            (8 * M, 4 * M, ExtentKind.Hole | ExtentKind.Zero, 0),
        ];
        Assert.Equal(expected, extents.Select(e => (e.Offset, e.Length, e.Kind, e.Depth)).ToArray());

        // Three layers are the whole chain: the same as the query without a limit.
        var all = await AllExtentsAsync(image, layers: 3);
        var unlimited = new List<BlockExtent>();
        for (long at = 0; at < image.VirtualSize;)
        {
            var part = await image.GetExtentsAsync(at, image.VirtualSize - at, Ct);
            unlimited.AddRange(part);
            at = part[^1].End;
        }

        Assert.Equal(unlimited, all);
        Assert.Contains(all, e => e.Depth == 3 && e.Kind == ExtentKind.Data);
    }

    /// <summary>base: data 0-4M; mid: data 1M-2M; top (12 MiB): data 512k-640k, a zero cluster at 1536k, data 3M-3M+64k.</summary>
    private static async Task<string> CreateChainAsync(TempDirectory dir)
    {
        var @base = dir.File("base.qcow2");
        var mid = dir.File("mid.qcow2");
        var top = dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", @base, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4M", @base);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 2 1M 1M", mid);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top, "12M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 3 512k 128k", "-c", "write -z 1536k 64k", "-c", "write -P 4 3M 64k", top);
        return top;
    }

    private static async Task<List<BlockExtent>> AllExtentsAsync(Qcow2Image image, int layers)
    {
        var extents = new List<BlockExtent>();
        for (long at = 0; at < image.VirtualSize;)
        {
            var part = await image.GetExtentsAsync(at, image.VirtualSize - at, layers, Ct);
            Assert.NotEmpty(part);
            Assert.Equal(at, part[0].Offset);
            extents.AddRange(part);
            at = part[^1].End;
        }

        return extents;
    }

    /// <summary>Adjacent runs with the same flags as one (qemu-img map also splits where host offsets jump).</summary>
    private static List<(long Start, long End, bool Allocated, bool Data)> Merge(IEnumerable<(long Start, long End, bool Allocated, bool Data)> runs)
    {
        var merged = new List<(long Start, long End, bool Allocated, bool Data)>();
        foreach (var r in runs)
        {
            if (merged.Count > 0 && merged[^1].End == r.Start && merged[^1].Allocated == r.Allocated && merged[^1].Data == r.Data)
            {
                merged[^1] = merged[^1] with { End = r.End };
            }
            else
            {
                merged.Add(r);
            }
        }

        return merged;
    }
}
