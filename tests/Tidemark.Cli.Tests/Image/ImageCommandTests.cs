using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary><c>tidemark image ...</c> run as the native program, judged by qemu-img on the same files.</summary>
public sealed class ImageCommandTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var run = await CliRun.RunAsync(args);
        return (run.ExitCode, run.Stdout, run.Stderr);
    }

    /// <summary>A file that cannot be created: qemu-img's error line, exit 1, never a crash.</summary>
    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Create_InAMissingDirectory_SaysWhatQemuImgSays(string format)
    {
        using var dir = new TempDirectory();
        var path = dir.File("missing/disk.img");
        var qemu = await Peer.RunAsync("qemu-img", ["create", "-f", format, path, "1M"]);
        var (code, _, err) = await RunAsync("image", "create", "-f", format, path, "1M");
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(qemu.ExitCode, code);
        Assert.Equal(qemu.Stderr.Replace("qemu-img: ", "error: ", StringComparison.Ordinal), err);
        Assert.DoesNotContain("Unhandled exception", err, StringComparison.Ordinal);
    }

    /// <summary>Image verbs on a block device (a loop device), judged by qemu-img on the same device.</summary>
    [Fact]
    public async Task BlockDevice_CreateInfoCheckMapResize_AsQemuImg()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, 64L << 20);
        var raw = JsonDocument.Parse((await RunAsync("image", "info", "--output=json", "-f", "raw", device.Path)).Out);
        Assert.Equal(64L << 20, raw.RootElement.GetProperty("virtual-size").GetInt64());

        var qemu = await Peer.RunAsync("qemu-img", ["resize", "-f", "raw", device.Path, "128M"]);
        var (code, _, err) = await RunAsync("image", "resize", "-f", "raw", device.Path, "128M");
        Assert.Equal(qemu.ExitCode, code);
        Assert.Equal(qemu.Stderr.Replace("qemu-img: ", "error: ", StringComparison.Ordinal), err);

        Assert.Equal(0, (await RunAsync("image", "create", "-f", "qcow2", device.Path, "32M")).Code);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 4k", device.Path);
        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", device.Path);
        var ours = await RunAsync("image", "check", "-f", "qcow2", device.Path);
        Assert.Equal(0, ours.Code);
        var qemuMap = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "qcow2", device.Path);
        Assert.Equal(qemuMap, (await RunAsync("image", "map", "--output=json", "-f", "qcow2", device.Path)).Out);
    }

    [Fact]
    public async Task Create_WithOptionsAndBacking_QemuAgrees()
    {
        using var dir = new TempDirectory();
        var base_ = dir.File("base.qcow2");
        var (code, output, _) = await RunAsync("image", "create", "-o", "cluster_size=4k,compat=0.10", base_, "20M");
        Assert.Equal(0, code);
        Assert.StartsWith($"Formatting '{base_}', fmt=qcow2 cluster_size=4096", output, StringComparison.Ordinal);
        var top = dir.File("top.qcow2");
        Assert.Equal(0, (await RunAsync("image", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)).Code);

        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "--backing-chain", top)).RootElement.EnumerateArray().ToList();
        Assert.Equal(20 << 20, info[0].GetProperty("virtual-size").GetInt64());
        Assert.Equal("base.qcow2", info[0].GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", info[0].GetProperty("backing-filename-format").GetString());
        Assert.Equal("0.10", info[1].GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString());
        Assert.Equal(4096, info[1].GetProperty("cluster-size").GetInt32());
        await Peer.RunCheckedAsync("qemu-img", "check", top);
        await Peer.RunCheckedAsync("qemu-img", "check", base_);
    }

    [Theory]
    [InlineData("cluster_size=3000", "Cluster size")]
    [InlineData("cluster_size=4M", "Cluster size")]
    [InlineData("compat=2.0", "compat")]
    [InlineData("refcount_bits=3", "Refcount width")]
    [InlineData("nonsense=1", "nonsense")]
    public async Task Create_BadOption_IsOneErrorLineNamingIt(string option, string named)
    {
        using var dir = new TempDirectory();
        var (code, _, err) = await RunAsync("image", "create", "-o", option, dir.File("x.qcow2"), "1M");
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.Contains(named, err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public async Task Info_Json_MatchesQemuImgInfo_IncludingBitmaps()
    {
        using var dir = new TempDirectory();
        var path = dir.File("i.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=128k,compression_type=zstd", path, "1G");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "1M", "--disable", path, "b1");
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "abort", path]);

        var (code, output, _) = await RunAsync("image", "info", "--output=json", path);
        Assert.Equal(0, code);
        var ours = JsonDocument.Parse(output).RootElement;
        var qemu = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", path)).RootElement;
        foreach (var field in new[] { "virtual-size", "cluster-size", "format", "format-specific" })
        {
            Assert.Equal(qemu.GetProperty(field).GetRawText().Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal), ours.GetProperty(field).GetRawText().Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Check_ExitCodesAndCounts_MatchQemuImgCheck()
    {
        using var dir = new TempDirectory();
        var clean = dir.File("clean.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", clean, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 1M", "-c", "write 2M 64k", "-c", "discard 2M 64k", clean);

        // A leak: give the discarded cluster 21 a refcount again (16-bit entries in the block at 0x20000).
        var leaked = dir.File("leaked.qcow2");
        File.Copy(clean, leaked);
        await Patch(leaked, 0x20000 + (21 * 2), [0, 1]);

        // A corruption: the L1 table's cluster (3) loses its refcount.
        var corrupt = dir.File("corrupt.qcow2");
        File.Copy(clean, corrupt);
        await Patch(corrupt, 0x20000 + (3 * 2), [0, 0]);

        foreach (var (path, expectedCode) in new[] { (clean, 0), (leaked, 3), (corrupt, 2) })
        {
            var qemu = await Peer.RunAsync("qemu-img", ["check", "--output=json", path]);
            var (code, output, err) = await RunAsync("image", "check", "--output=json", path);
            Assert.Equal(expectedCode, qemu.ExitCode);
            Assert.Equal(qemu.ExitCode, code);
            var q = JsonDocument.Parse(qemu.Stdout).RootElement;
            var o = JsonDocument.Parse(output).RootElement;
            foreach (var field in new[] { "image-end-offset", "total-clusters", "check-errors", "allocated-clusters" })
            {
                Assert.Equal(q.GetProperty(field).GetInt64(), o.GetProperty(field).GetInt64());
            }

            Assert.Equal(q.TryGetProperty("leaks", out var ql) ? ql.GetInt64() : 0, o.TryGetProperty("leaks", out var ol) ? ol.GetInt64() : 0);
            Assert.Equal(q.TryGetProperty("corruptions", out var qc) ? qc.GetInt64() : 0, o.TryGetProperty("corruptions", out var oc) ? oc.GetInt64() : 0);
            if (expectedCode == 3)
            {
                Assert.Contains("Leaked cluster 21 refcount=1 reference=0", err, StringComparison.Ordinal);
            }
        }

        var raw = dir.File("r.raw");
        await File.WriteAllBytesAsync(raw, new byte[4096], TestContext.Current.CancellationToken);
        Assert.Equal(63, (await RunAsync("image", "check", raw)).Code);
    }

    [Theory]
    [InlineData("qcow2", false)]
    [InlineData("qcow2", true)]
    [InlineData("raw", false)]
    public async Task Convert_IsSparseAndIdentical(string targetFormat, bool compress)
    {
        using var dir = new TempDirectory();
        var source = dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", source, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 1M 3M", "-c", "write -z 8M 8M", "-c", "write -P 0 20M 2M", "-c", "write -P 0x62 63M 100k", source);
        var target = dir.File("t." + targetFormat);
        var args = new List<string> { "image", "convert", "-O", targetFormat };
        if (compress)
        {
            args.Add("-c");
        }

        args.AddRange([source, target]);
        var (code, _, err) = await RunAsync([.. args]);
        Assert.True(code == 0, err);
        Assert.Contains("Images are identical.", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "qcow2", "-F", targetFormat, source, target), StringComparison.Ordinal);

        // Only the 3 MiB + 100 KiB of non-zero data may be allocated; the written zeroes are not.
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", targetFormat, target)).RootElement;
        var data = map.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean()).Sum(e => e.GetProperty("length").GetInt64());
        Assert.InRange(data, (3 << 20) + (100 << 10), (3 << 20) + (128 << 10));
        if (targetFormat == "qcow2")
        {
            var check = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "check", "--output=json", target)).RootElement;
            Assert.Equal(compress, check.TryGetProperty("compressed-clusters", out var cc) && cc.GetInt64() > 0);
        }
    }

    [Fact]
    public async Task Compare_ReportsFirstMismatchLikeQemu()
    {
        using var dir = new TempDirectory();
        var a = dir.File("a.qcow2");
        var b = dir.File("b.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", a, "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", b, "16M");
        Assert.Equal((0, "Images are identical.\n"), Strip(await RunAsync("image", "compare", a, b)));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 10485761 1", a);
        var qemu = await Peer.RunAsync("qemu-img", ["compare", a, b]);
        var ours = await RunAsync("image", "compare", a, b);
        Assert.Equal((qemu.ExitCode, qemu.Stdout), Strip(ours));
        Assert.Equal(2, (await RunAsync("image", "compare", a, dir.File("missing"))).Code);
    }

    [Fact]
    public async Task Map_Json_MatchesQemuImgMap()
    {
        using var dir = new TempDirectory();
        var path = dir.File("m.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 1M 1M", "-c", "write -z 4M 64k", "-c", "write 15M 64k", "-c", "write 8M 64k", "-c", "write -z 15M 64k", path);
        var (code, output, _) = await RunAsync("image", "map", "--output=json", path);
        Assert.Equal(0, code);
        var ours = JsonDocument.Parse(output).RootElement.EnumerateArray().Select(Key).ToList();
        var qemu = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path)).RootElement.EnumerateArray().Select(Key).ToList();
        Assert.Equal(qemu, ours);

        static string Key(JsonElement e) => $"{e.GetProperty("start")} {e.GetProperty("length")} {e.GetProperty("depth")} {e.GetProperty("present")} {e.GetProperty("zero")} {e.GetProperty("data")} {(e.TryGetProperty("offset", out var o) ? o.GetInt64() : -1)}";
    }

    [Theory]
    [InlineData("preallocation=off", false)]
    [InlineData("preallocation=metadata", true)]
    public async Task Map_Json_OfPartlyWrittenClusters_IsByteIdenticalToQemuImgMap(string options, bool split)
    {
        // The file keeps holes inside both clusters; qemu-img map reports them as zero only in a
        // metadata-preallocated image.
        using var dir = new TempDirectory();
        var path = dir.File("p.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 4k", "-c", "write -P 2 5M 8k", path);
        var (code, output, _) = await RunAsync("image", "map", "--output=json", path);
        Assert.Equal(0, code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path), output);
        Assert.Contains(split ? "{ \"start\": 1048576, \"length\": 4096," : "{ \"start\": 1048576, \"length\": 65536,", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--output=json")]
    [InlineData("--output=human")]
    public async Task Map_OfBackingChain_IsByteIdenticalToQemuImgMap(string output)
    {
        // Data, zero and partial clusters in both layers, and in the top a data range whose host
        // clusters run backwards (6M written before 6M - 64k), which qemu-img splits; the human
        // format names the file each data range is in, as qemu-img names it.
        using var dir = new TempDirectory();
        var base_ = dir.File("base.qcow2");
        var top = dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", base_, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 1M", "-c", "write -z 2M 1M", "-c", "write 3M 4k", base_);
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 512k 128k", "-c", "write 7M 64k", "-c", "write -z 5M 64k", "-c", "write 6M 64k", "-c", "write 6080k 64k", top);
        var (code, printed, _) = await RunAsync("image", "map", output, top);
        Assert.Equal(0, code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "map", output, top), printed);
    }

    private static (int, string) Strip((int Code, string Out, string Err) r) => (r.Code, r.Out);

    private static async Task Patch(string path, long offset, byte[] bytes)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Seek(offset, SeekOrigin.Begin);
        await f.WriteAsync(bytes, TestContext.Current.CancellationToken);
    }
}
