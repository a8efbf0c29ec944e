using System.Text.Json;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// libnbd's and QEMU's clients against Tidemark's server: what they print is compared with what
/// they print against qemu-nbd serving the same image, and what they copy is compared byte for byte.
/// </summary>
public sealed class PeerClientTests
{
    [Fact]
    public async Task NbdinfoMap_BaseAllocation_SameAsQemuNbd()
    {
        using var dir = new TempDirectory("nbd-map");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "raw", "-t", "-e", "4", "-x", "vda", path);

        foreach (var args in new[] { new[] { "--map" }, ["--map", "--json"], ["--map", "--totals"] })
        {
            var expected = await Peer.RunCheckedAsync("nbdinfo", [.. args, qemu.UnixUri("vda")]);
            var actual = await Peer.RunCheckedAsync("nbdinfo", [.. args, ours.UnixUri("vda")]);
            Assert.Equal(expected, actual);
        }

        // The map is not trivially equal: it has data and holes where qemu-io wrote them.
        var map = await Peer.RunCheckedAsync("nbdinfo", "--map", ours.UnixUri("vda"));
        Assert.Equal(
            "         0       65536    0  data\n" +
            "     65536     3080192    3  hole,zero\n" +
            "   3145728      131072    0  data\n" +
            "   3276800    13500416    3  hole,zero\n" +
            "  16777216       65536    0  data\n" +
            "  16842752    50266112    3  hole,zero\n",
            map);
    }

    [Theory]
    [InlineData("preallocation=off", false)]
    [InlineData("preallocation=metadata", true)]
    public async Task NbdinfoMap_Qcow2PartlyWrittenClusters_SameAsQemuNbd(string options, bool split)
    {
        // Clusters written in part keep holes in the host file; qemu-nbd reports them as zero
        // only in a metadata-preallocated image (qcow2_detect_metadata_preallocation).
        using var dir = new TempDirectory("nbd-prealloc");
        var path = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 4k", "-c", "write -P 2 5M 8k", path);
        await using var image = await Tidemark.Storage.Qcow2.Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "qcow2", "-t", "-x", "vda", path);

        foreach (var args in new[] { new[] { "--map" }, ["--map", "--json"] })
        {
            Assert.Equal(await Peer.RunCheckedAsync("nbdinfo", [.. args, qemu.UnixUri("vda")]), await Peer.RunCheckedAsync("nbdinfo", [.. args, ours.UnixUri("vda")]));
        }

        var map = await Peer.RunCheckedAsync("nbdinfo", "--map", ours.UnixUri("vda"));
        Assert.Contains(split ? "   1048576        4096    0  data\n" : "   1048576       65536    0  data\n", map, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NbdinfoMap_DirtyBitmap_SameAsQemuNbd()
    {
        // qemu-nbd serves a qcow2 image whose bitmap b0 recorded writes at 192 KiB, 1 MiB and
        // 2 MiB (the last as zeroes, so dirty but not allocated). Tidemark serves the same bytes
        // as raw with the same dirty ranges; nbdinfo must print the same map for both.
        using var dir = new TempDirectory("nbd-dirty");
        var qcow2 = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", qcow2);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", qcow2, "b0");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 192k 64k", "-c", "write -P 0x33 1M 64k", "-c", "write -z 2M 128k", qcow2);
        var raw = dir.File("disk.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw);

        await using var image = RawImage.Open(raw, readOnly: true);
        var bitmap = new DirtyExtentMap("b0", image.VirtualSize, [(192 << 10, 64 << 10), (1 << 20, 64 << 10), (2 << 20, 128 << 10)]);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image) { DirtyBitmaps = [bitmap] }]);
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "qcow2", "-t", "-x", "vda", "-B", "b0", qcow2);

        var expected = await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", qemu.UnixUri("vda"));
        var actual = await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", ours.UnixUri("vda"));
        Assert.Equal(expected, actual);
        Assert.Contains("dirty", actual, StringComparison.Ordinal);
        var json = await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", "--json", ours.UnixUri("vda"));
        Assert.Equal(await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", "--json", qemu.UnixUri("vda")), json);

        // QEMU's own client reads the bitmap through x-dirty-bitmap with REQ_ONE requests (and
        // prints it inverted, formats.md §4.10): the same transcript from both servers.
        string QemuImgMap(string socket) => $"driver=nbd,export=vda,server.type=unix,server.path={socket},x-dirty-bitmap=qemu:dirty-bitmap:b0";
        var qemuMap = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "--image-opts", QemuImgMap(qemu.SocketPath!));
        var ourMap = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "--image-opts", QemuImgMap(ours.SocketPath));
        Assert.Equal(qemuMap, ourMap);
        Assert.Contains("\"present\": false", ourMap, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NbdinfoListAndJson_DescribeExportsAsQemuNbd()
    {
        using var dir = new TempDirectory("nbd-list");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        var bitmap = new DirtyExtentMap("b0", image.VirtualSize, []);
        await using var ours = await TestServer.StartAsync(dir,
        [
            new NbdExport("vda", image) { Description = "first disk", DirtyBitmaps = [bitmap], AllocationDepth = true, MultiConn = true },
            new NbdExport("vdb", image) { ReadOnly = true },
            new NbdExport("sda", image) { ReadOnly = true },
        ]);

        // Listed in the order they were added, not by name, as QEMU's server lists them.
        var list = await Peer.RunCheckedAsync("nbdinfo", "--list", "--json", ours.UnixUri());
        using var listed = JsonDocument.Parse(list);
        var exports = listed.RootElement.GetProperty("exports").EnumerateArray().ToList();
        Assert.Equal(["vda", "vdb", "sda"], exports.Select(e => e.GetProperty("export-name").GetString()));
        Assert.Equal("first disk", exports[0].GetProperty("description").GetString());
        Assert.Equal(["base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b0"], exports[0].GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));

        // Facts that qemu-nbd reports for the same read-only, shared export.
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "raw", "-t", "-e", "4", "-x", "vda", path);
        using var theirs = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", qemu.UnixUri("vda")));
        using var mine = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", ours.UnixUri("vda")));
        var q = theirs.RootElement.GetProperty("exports")[0];
        var m = mine.RootElement.GetProperty("exports")[0];
        foreach (var key in new[] { "export-size", "is_read_only", "can_multi_conn", "can_flush", "can_fua", "can_df", "can_cache", "can_trim", "can_zero", "block_size_minimum", "block_size_preferred", "block_size_maximum" })
        {
            Assert.True(q.GetProperty(key).ToString() == m.GetProperty(key).ToString(), $"{key}: qemu-nbd {q.GetProperty(key)}, tidemark {m.GetProperty(key)}");
        }

        Assert.Equal(theirs.RootElement.GetProperty("structured").GetBoolean(), mine.RootElement.GetProperty("structured").GetBoolean());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task Nbdcopy_FromServer_CopiesEveryByte(int connections)
    {
        using var dir = new TempDirectory("nbd-copy");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("", image) { MultiConn = true }]);
        var target = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", "-C", connections.ToString(System.Globalization.CultureInfo.InvariantCulture), ours.UnixUri(), target);
        Assert.Equal(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken), await File.ReadAllBytesAsync(target, TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task Nbdcopy_ToServer_WritesEveryByte(int connections)
    {
        using var dir = new TempDirectory("nbd-copy-in");
        var source = await Images.SparseRawAsync(dir, "source.raw");
        var targetPath = dir.File("target.raw");
        await using (var f = File.Create(targetPath))
        {
            f.SetLength(new FileInfo(source).Length);
        }

        // Old data in the target that the copy must overwrite with the source's holes.
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 1M 2M", targetPath);
        await using var image = RawImage.Open(targetPath, readOnly: false);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("", image) { MultiConn = true }]);
        await Peer.RunCheckedAsync("nbdcopy", "-C", connections.ToString(System.Globalization.CultureInfo.InvariantCulture), source, ours.UnixUri());
        var compare = await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", source, targetPath);
        Assert.Equal("Images are identical.\n", compare);
    }

    [Fact]
    public async Task QemuImg_InfoConvertCompare_OverTcpAndUnix()
    {
        using var dir = new TempDirectory("nbd-qemu-img");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image)], tcp: true);
        foreach (var uri in new[] { ours.UnixUri("vda"), ours.TcpUri("vda") })
        {
            using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", uri));
            Assert.Equal(64L << 20, info.RootElement.GetProperty("virtual-size").GetInt64());
            Assert.Equal("raw", info.RootElement.GetProperty("format").GetString());

            var converted = dir.File($"converted-{Guid.NewGuid():N}.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", uri, converted);
            Assert.Equal("Images are identical.\n", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "qcow2", path, converted));
            Assert.Equal("Images are identical.\n", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", uri, path));

            // qemu-img map over NBD reads base:allocation: the same layout as the file itself.
            var overNbd = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", uri);
            var local = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", path);
            Assert.Equal(DataRanges(local), DataRanges(overNbd));
        }
    }

    private static string DataRanges(string qemuImgMapJson)
    {
        using var doc = JsonDocument.Parse(qemuImgMapJson);
        return string.Join(';', doc.RootElement.EnumerateArray()
            .Where(e => e.GetProperty("data").GetBoolean())
            .Select(e => $"{e.GetProperty("start").GetInt64()}+{e.GetProperty("length").GetInt64()}"));
    }

    [Fact]
    public async Task QemuIo_WritesOverNbd_SameAsLocalWrites()
    {
        using var dir = new TempDirectory("nbd-qemu-io");
        var served = await Images.SparseRawAsync(dir, "served.raw");
        var reference = await Images.SparseRawAsync(dir, "reference.raw");
        string[] commands =
        [
            "-c", "write -P 0x41 1M 64k",
            "-c", "write -f -P 0x42 5M 4k",
            "-c", "write -z 0 32k",
            "-c", "write -z -u 3M 64k",
            "-c", "discard 16M 64k",
            "-c", "write -P 0x43 1000 3000",
            "-c", "flush",
        ];
        await using (var image = RawImage.Open(served, readOnly: false))
        {
            await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
            await Peer.RunCheckedAsync("qemu-io", ["-f", "raw", .. commands, ours.UnixUri("vda")]);
            var read = await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x41 1M 64k", "-c", "read -P 0x43 1000 3000", ours.UnixUri("vda"));
            Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);
        }

        await Peer.RunCheckedAsync("qemu-io", ["-f", "raw", .. commands, reference]);
        Assert.Equal("Images are identical.\n", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", reference, served));
    }

    [Fact]
    public async Task Nbdsh_ReadOnlyExport_RefusesWritesWithEperm()
    {
        using var dir = new TempDirectory("nbd-ro");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var ours = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        // Strict mode off, so libnbd sends the write instead of refusing it itself.
        var result = await Nbdsh.RunAsync(null, "h.set_strict_mode(0)", $"h.connect_uri('{ours.UnixUri("vda")}')", "h.pwrite(b'x' * 512, 0)");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Operation not permitted", result.Stderr, StringComparison.Ordinal);
        Assert.True(await ours.Log.WaitForAsync("invalid request: NBD_CMD_WRITE: export is read-only"));
    }
}
