using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// Odd sizes, raw maps and damaged qcow2 images: each case runs the same command through
/// Tidemark and qemu-img 7.2 on copies of the same file and compares what they say. A damaged
/// image must give one error line (or qemu-img's result), never an unhandled exception, and a
/// refused command leaves the file byte-identical.
/// </summary>
public sealed class ImageHardeningTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var run = await CliRun.RunAsync(args);
        return (run.ExitCode, run.Stdout, run.Stderr);
    }

    private static async Task<string> HashAsync(string path)
        => Convert.ToHexString(SHA256.HashData(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken)));

    private static async Task PatchAsync(string path, long offset, params byte[] bytes)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Seek(offset, SeekOrigin.Begin);
        await f.WriteAsync(bytes, TestContext.Current.CancellationToken);
    }

    private static async Task<ulong> ReadU64Async(string path, long offset)
    {
        var bytes = new byte[8];
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
        f.Seek(offset, SeekOrigin.Begin);
        await f.ReadExactlyAsync(bytes, TestContext.Current.CancellationToken);
        return BinaryPrimitives.ReadUInt64BigEndian(bytes);
    }

    private static byte[] U64(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        return bytes;
    }

    private static long QemuVirtualSize(string json) => JsonDocument.Parse(json).RootElement.GetProperty("virtual-size").GetInt64();

    private async Task<string> RandomRawAsync(string name, int length)
    {
        var path = _dir.File(name);
        await File.WriteAllBytesAsync(path, RandomNumberGenerator.GetBytes(length), TestContext.Current.CancellationToken);
        return path;
    }

    // ---- sizes that are not whole sectors (issue defect 3) ----

    [Fact]
    public async Task Create_1001Bytes_IsRoundedUpTo1024AsQemuImgDoes()
    {
        var qcow2 = _dir.File("q.qcow2");
        var raw = _dir.File("r.raw");
        var (code, output, _) = await RunAsync("image", "create", qcow2, "1001");
        Assert.Equal(0, code);
        Assert.Contains("size=1001", output, StringComparison.Ordinal);
        Assert.Equal(0, (await RunAsync("image", "create", "-f", "raw", raw, "1001")).Code);

        Assert.Equal(1024, QemuVirtualSize(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", qcow2)));
        Assert.Equal(1024, new FileInfo(raw).Length);
        var qemu = _dir.File("qemu.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", qemu, "1001");
        Assert.Equal(await ReadU64Async(qemu, 24), await ReadU64Async(qcow2, 24));
    }

    [Fact]
    public async Task Convert_1001ByteRaw_Gives1024BytesQemuReadsBack()
    {
        var raw = await RandomRawAsync("r.raw", 1001);
        var qcow2 = _dir.File("c.qcow2");
        Assert.Equal(0, (await RunAsync("image", "convert", "-O", "qcow2", raw, qcow2)).Code);

        Assert.Equal(1024, QemuVirtualSize(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", qcow2)));
        var back = _dir.File("back.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", qcow2, back);
        Assert.Equal(1024, new FileInfo(back).Length);
        var result = await Peer.RunAsync("qemu-img", ["compare", raw, qcow2]);
        Assert.Equal(0, result.ExitCode);
    }

    [Fact]
    public async Task Info_1001ByteRaw_Says1024LikeQemuImg()
    {
        var raw = await RandomRawAsync("r.raw", 1001);
        var (code, output, _) = await RunAsync("image", "info", "--output=json", raw);
        Assert.Equal(0, code);
        Assert.Equal(QemuVirtualSize(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", raw)), QemuVirtualSize(output));
    }

    [Theory]
    [InlineData(1024, false)]
    [InlineData(1024, true)]
    [InlineData(1536, true)]
    public async Task Compare_1001ByteRaw_AgreesWithQemuImgCompare(int otherLength, bool dirtyTail)
    {
        var a = await RandomRawAsync("a.raw", 1001);
        var bytes = new byte[otherLength];
        (await File.ReadAllBytesAsync(a, TestContext.Current.CancellationToken)).CopyTo(bytes, 0);
        if (dirtyTail)
        {
            bytes[^1] = 0x5a;
        }

        var b = _dir.File("b.raw");
        await File.WriteAllBytesAsync(b, bytes, TestContext.Current.CancellationToken);
        var qemu = await Peer.RunAsync("qemu-img", ["compare", a, b]);
        var (code, output, _) = await RunAsync("image", "compare", a, b);
        Assert.Equal(qemu.ExitCode, code);

        // Same walk as qemu-img: the zero tail past 1001 is one chunk, so a difference there is
        // reported at 1001, and the size warning only when the common part matched.
        Assert.Equal(qemu.Stdout, output);
    }

    // ---- image map on raw files (defect 4) ----

    [Theory]
    [InlineData(1001)]
    [InlineData(1 << 20)]
    public async Task MapJson_RawWithHolesAndData_IsByteIdenticalToQemuImg(int length)
    {
        var raw = _dir.File("h.raw");
        await using (var f = new FileStream(raw, FileMode.Create, FileAccess.Write))
        {
            f.SetLength(length);
            if (length > 256 << 10)
            {
                f.Seek(192 << 10, SeekOrigin.Begin);
                await f.WriteAsync(RandomNumberGenerator.GetBytes(64 << 10), TestContext.Current.CancellationToken);
            }
            else
            {
                await f.WriteAsync(RandomNumberGenerator.GetBytes(length), TestContext.Current.CancellationToken);
            }
        }

        var (code, output, _) = await RunAsync("image", "map", "--output=json", raw);
        Assert.Equal(0, code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", raw), output);
    }

    [Fact]
    public async Task MapJson_Qcow2OverRawWithHoles_IsByteIdenticalToQemuImg()
    {
        // The raw backing file's holes are present zeroes at depth 1 with their offset.
        var raw = _dir.File("base.raw");
        await using (var f = new FileStream(raw, FileMode.Create, FileAccess.Write))
        {
            f.SetLength(1 << 20);
            f.Seek(192 << 10, SeekOrigin.Begin);
            await f.WriteAsync(RandomNumberGenerator.GetBytes(64 << 10), TestContext.Current.CancellationToken);
        }

        var top = _dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", raw, "-F", "raw", top);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 3 0 64k", top);

        var (code, output, _) = await RunAsync("image", "map", "--output=json", top);
        Assert.Equal(0, code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", top), output);
    }

    [Fact]
    public async Task MapJson_DataClustersOverHostHoles_AreDataAndZeroAsQemuImgSays()
    {
        // Three data clusters written by QEMU, then part of the file under them punched out and
        // the file cut inside the last: QEMU asks the host file and reports those bytes as
        // allocated zeroes ("zero": true, "data": true), split at the hole's edges.
        var top = _dir.File("holes.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", top, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 64k", "-c", "write -P 2 128k 64k", "-c", "write -P 3 256k 64k", top);
        var first = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", top)).RootElement[0].GetProperty("offset").GetInt64();
        await Peer.RunCheckedAsync("fallocate", "--punch-hole", "--offset", (first + 4096).ToString(System.Globalization.CultureInfo.InvariantCulture), "--length", "61440", top);
        var length = new FileInfo(top).Length;
        await using (var f = new FileStream(top, FileMode.Open, FileAccess.Write))
        {
            f.SetLength(length - (32 << 10));
        }

        var (code, output, _) = await RunAsync("image", "map", "--output=json", top);
        Assert.Equal(0, code);
        var qemu = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", top);
        Assert.Contains("\"zero\": true, \"data\": true", qemu, StringComparison.Ordinal);
        Assert.Equal(qemu, output);
    }

    // ---- corrupt qcow2 images (defect 5) ----

    [Theory]
    [InlineData("info")]
    [InlineData("map")]
    [InlineData("convert")]
    [InlineData("bitmap")]
    public async Task NulInBackingFileName_IsOneErrorLine_NamingTheNameQemuReads(string verb)
    {
        var base_ = _dir.File("base.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", base_, "1M");
        var top = _dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top);
        var nameOffset = (long)await ReadU64Async(top, 8);
        await PatchAsync(top, nameOffset + 2, 0);
        var before = await HashAsync(top);

        string[] args = verb switch
        {
            "convert" => ["image", "convert", "-O", "raw", top, _dir.File("out.raw")],
            "bitmap" => ["image", "bitmap", "--add", top, "b0"],
            // Plain info does not open the backing file (qemu-img info neither); the chain does.
            "info" => ["image", "info", "--backing-chain", top],
            _ => ["image", verb, top],
        };
        var (code, _, err) = await RunAsync(args);

        // qemu-img reads the name as a C string: backing file 'ba', which does not exist.
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.Contains("'ba'", err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
        Assert.Equal(before, await HashAsync(top));
    }

    [Fact]
    public async Task MissingBackingFile_InfoDescribesTheImage_ChainCheckAndMapFail_AsQemuImg()
    {
        var basePath = _dir.File("gone.qcow2");
        var top = _dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", basePath, "1M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", top);
        File.Delete(basePath);

        // qemu-img info opens without the backing chain: the image describes itself.
        var info = await RunAsync("image", "info", top);
        Assert.Equal(0, info.Code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "info", top), info.Out);

        // Anything that needs the chain fails with one line naming the missing file, as qemu-img exits 1.
        foreach (var args in new[] { new[] { "info", "--backing-chain" }, ["check"], ["map"] })
        {
            var qemu = await Peer.RunAsync("qemu-img", [.. args, top]);
            var ours = await RunAsync(["image", .. args, top]);
            Assert.Equal(1, qemu.ExitCode);
            Assert.Equal(qemu.ExitCode, ours.Code);
            Assert.Contains("gone.qcow2", ours.Err, StringComparison.Ordinal);
            Assert.Contains("No such file or directory", ours.Err, StringComparison.Ordinal);
            Assert.DoesNotContain("No errors were found", ours.Out, StringComparison.Ordinal);
            Assert.Single(ours.Err.Trim().Split('\n'));
        }
    }

    [Fact]
    public async Task Check_RefcountTableEntryWithTopBit_FailsAsQemuImgCheck()
    {
        var path = _dir.File("rt.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        var table = (long)await ReadU64Async(path, 48);
        await PatchAsync(path, table, U64(await ReadU64Async(path, table) | (1UL << 63)));

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        var (code, output, err) = await RunAsync("image", "check", path);
        Assert.Equal(qemu.ExitCode, code);
        Assert.Contains("ERROR refcount block 0 is outside image", err, StringComparison.Ordinal);
        Assert.Contains("internal errors have occurred during the check", output, StringComparison.Ordinal);
    }

    private async Task<string> ReservedBitsImageAsync()
    {
        var path = _dir.File("rb.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 7 0 64k", path);
        var l1 = (long)await ReadU64Async(path, 40);
        var l2 = (long)(await ReadU64Async(path, l1) & 0x00fffffffffffe00);
        await PatchAsync(path, l2, U64(await ReadU64Async(path, l2) | 0x2 | (1UL << 57)));
        return path;
    }

    [Fact]
    public async Task L2EntryWithReservedBits_MapCompareAndCheckAgreeWithQemuImg()
    {
        var path = await ReservedBitsImageAsync();
        var raw = _dir.File("rb.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", path, raw);

        var map = await RunAsync("image", "map", "--output=json", path);
        Assert.Equal(0, map.Code);
        Assert.Equal(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path), map.Out);

        var qemuCompare = await Peer.RunAsync("qemu-img", ["compare", path, raw]);
        var compare = await RunAsync("image", "compare", path, raw);
        Assert.Equal(qemuCompare.ExitCode, compare.Code);
        Assert.Equal(qemuCompare.Stdout, compare.Out);

        var qemuCheck = await Peer.RunAsync("qemu-img", ["check", path]);
        var check = await RunAsync("image", "check", path);
        Assert.Equal(qemuCheck.ExitCode, check.Code);
        Assert.Equal(qemuCheck.Stdout, check.Out);
        Assert.Contains("ERROR found l2 entry with reserved bits set", check.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Compare_UnreadableMetadata_ExitsAsQemuImgWithOneErrorLine()
    {
        var path = await ReservedBitsImageAsync();
        var l1 = (long)await ReadU64Async(path, 40);
        var l2 = (long)(await ReadU64Async(path, l1) & 0x00fffffffffffe00);
        await PatchAsync(path, l2, U64(0x8000000000050200));
        var other = _dir.File("o.raw");
        await File.WriteAllBytesAsync(other, new byte[1 << 20], TestContext.Current.CancellationToken);

        var (code, _, err) = await RunAsync("image", "compare", path, other);
        Assert.Equal((await Peer.RunAsync("qemu-img", ["compare", path, other])).ExitCode, code);
        Assert.Contains("unaligned", err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    private async Task<string> DamagedRefcountsWithBitmapAsync()
    {
        var path = _dir.File("bmd.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", path);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bc");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bd");

        // Zero the refcounts of clusters 5..11: data, bitmap tables and the directory.
        var table = (long)await ReadU64Async(path, 48);
        var block = (long)await ReadU64Async(path, table);
        await PatchAsync(path, block + 10, new byte[14]);
        Assert.Equal(2, (await Peer.RunAsync("qemu-img", ["check", path])).ExitCode);
        return path;
    }

    [Theory]
    [InlineData("--remove", "nosuch", "Dirty bitmap 'nosuch' not found")]
    [InlineData("--add", "bc", "Bitmap already exists: bc")]
    [InlineData("--remove", "bc", "metadata is damaged")]
    [InlineData("--clear", "bd", "metadata is damaged")]
    [InlineData("--add", "new", "metadata is damaged")]
    public async Task Bitmap_OnDamagedImage_FailsAndLeavesTheFileByteIdentical(string operation, string name, string error)
    {
        var path = await DamagedRefcountsWithBitmapAsync();
        var before = await HashAsync(path);

        var (code, _, err) = await RunAsync("image", "bitmap", operation, path, name);
        Assert.Equal(1, code);
        Assert.Contains(error, err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
        Assert.Equal(before, await HashAsync(path));
    }

    [Fact]
    public async Task Bitmap_SequenceFailingLate_WritesNothing()
    {
        var path = _dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");
        var before = await HashAsync(path);

        // --add b1 would succeed, --disable of the removed b1 cannot: nothing is done at all.
        var (code, _, err) = await RunAsync("image", "bitmap", "--add", "--remove", "--disable", path, "b1");
        Assert.Equal(1, code);
        Assert.Contains("Operation disable on bitmap b1 failed: Dirty bitmap 'b1' not found", err, StringComparison.Ordinal);
        Assert.Equal(before, await HashAsync(path));
    }

    // ---- check must not call a broken bitmap directory clean (defect 6) ----

    public static TheoryData<string, int, byte[], string> BitmapDirectoryDamage => new()
    {
        { "type", 16, [2], "Bitmap 'bc' doesn't satisfy the constraints" },
        { "granularity", 17, [8], "Bitmap 'bc' doesn't satisfy the constraints" },
        { "name_size", 18, [0x7f, 0xff], "Broken bitmap directory" },
        { "extra_data_size", 20, [0, 0, 0, 8], "Bitmap extra data is not supported" },
    };

    [Theory]
    [MemberData(nameof(BitmapDirectoryDamage))]
    public async Task Check_BrokenBitmapDirectoryEntry_FailsAsQemuImgCheck(string field, int offsetInEntry, byte[] bytes, string qemuWords)
    {
        var path = _dir.File($"bm-{field}.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bc");

        // A second entry after the first, so that 8 bytes of extra data still fit in the directory.
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bd");
        var directory = await BitmapDirectoryOffsetAsync(path);
        await PatchAsync(path, directory + offsetInEntry, bytes);

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        Assert.Contains(qemuWords, qemu.Stderr, StringComparison.Ordinal);
        var (code, output, err) = await RunAsync("image", "check", path);
        Assert.Equal(qemu.ExitCode, code);
        Assert.DoesNotContain("No errors were found", output, StringComparison.Ordinal);
        Assert.Contains(qemuWords, err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("directory size", 8, "Broken bitmap directory")]
    [InlineData("extension length", -4, "Header extension too large")]
    public async Task Check_BrokenBitmapsExtension_FailsAsQemuImgCheck(string what, int offsetInExtension, string qemuWords)
    {
        var path = _dir.File("bx.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bc");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bd");
        var extension = await BitmapsExtensionPayloadAsync(path);
        if (what == "directory size")
        {
            // One entry is 32 bytes: 8 fewer cuts the second one short.
            await PatchAsync(path, extension + offsetInExtension, U64(await ReadU64Async(path, extension + offsetInExtension) - 8));
        }
        else
        {
            await PatchAsync(path, extension + offsetInExtension, 0, 1, 0, 0);
        }

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        Assert.Contains(qemuWords, qemu.Stderr, StringComparison.Ordinal);
        var (code, _, err) = await RunAsync("image", "check", path);
        Assert.Equal(qemu.ExitCode, code);
        Assert.Contains(qemuWords, err, StringComparison.Ordinal);
    }

    // ---- info and create details (the minor defects) ----

    [Theory]
    [InlineData("top.qcow2", "base.qcow2")]
    [InlineData("d/top.qcow2", "base.qcow2")]
    [InlineData("d/top.qcow2", "../base.qcow2")]
    [InlineData("./d/top.qcow2", "e/base.qcow2")]
    public async Task Info_FullBackingFilename_IsWhatQemuImgPrints(string image, string backing)
    {
        var imagePath = Path.Combine(_dir.Path, image);
        Directory.CreateDirectory(Path.GetDirectoryName(imagePath)!);
        var backingPath = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(imagePath)!, backing));
        Directory.CreateDirectory(Path.GetDirectoryName(backingPath)!);
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", backingPath, "1M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", backing, "-F", "qcow2", imagePath);

        // qemu-img run from the temporary directory with the image name as given, relative.
        var qemu = await Peer.RunAsync("qemu-img", ["info", "--output=json", image], workingDirectory: _dir.Path);
        Assert.Equal(0, qemu.ExitCode);
        var expected = JsonDocument.Parse(qemu.Stdout).RootElement.GetProperty("full-backing-filename").GetString();
        var relative = await CliRun.RunAsync(["image", "info", "--output=json", image], workingDirectory: _dir.Path);
        Assert.Equal(0, relative.ExitCode);
        Assert.Equal(expected, JsonDocument.Parse(relative.Stdout).RootElement.GetProperty("full-backing-filename").GetString());

        // Absolute names stay absolute, in qemu-img and here.
        var (code, output, _) = await RunAsync("image", "info", "--output=json", imagePath);
        Assert.Equal(0, code);
        var absolute = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", imagePath)).RootElement.GetProperty("full-backing-filename").GetString();
        Assert.Equal(absolute, JsonDocument.Parse(output).RootElement.GetProperty("full-backing-filename").GetString());
    }

    [Fact]
    public async Task Info_Compat010_ListsOnlyWhatQemuImgLists()
    {
        var path = _dir.File("v2.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", path, "1M");
        var (code, output, _) = await RunAsync("image", "info", "--output=json", path);
        Assert.Equal(0, code);
        var qemu = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", path)).RootElement.GetProperty("format-specific").GetProperty("data");
        var ours = JsonDocument.Parse(output).RootElement.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(qemu.EnumerateObject().Select(p => $"{p.Name}={p.Value}"), ours.EnumerateObject().Select(p => $"{p.Name}={p.Value}"));

        var human = await RunAsync("image", "info", path);
        var qemuHuman = await Peer.RunCheckedAsync("qemu-img", "info", path);
        Assert.Equal(qemuHuman[qemuHuman.IndexOf("Format specific", StringComparison.Ordinal)..], human.Out[human.Out.IndexOf("Format specific", StringComparison.Ordinal)..]);
    }

    [Theory]
    [InlineData("2147483648")]
    [InlineData("4294967808")]
    [InlineData("4M")]
    public async Task Create_ClusterSizeOutOfRange_SaysWhatQemuImgSays(string clusterSize)
    {
        var qemu = await Peer.RunAsync("qemu-img", ["create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", _dir.File("q.qcow2"), "1M"]);
        Assert.NotEqual(0, qemu.ExitCode);
        var (code, _, err) = await RunAsync("image", "create", "-o", $"cluster_size={clusterSize}", _dir.File("t.qcow2"), "1M");
        Assert.Equal(1, code);
        Assert.Equal("error: Cluster size must be a power of two between 512 and 2048k\n", err.ReplaceLineEndings("\n"));
        Assert.EndsWith(": Cluster size must be a power of two between 512 and 2048k", qemu.Stderr.TrimEnd(), StringComparison.Ordinal);
    }

    /// <summary>Host offset of the bitmaps extension's payload (after its 8-byte type and length).</summary>
    private static async Task<long> BitmapsExtensionPayloadAsync(string path)
    {
        var header = await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken);
        var at = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(100));
        while (true)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(at));
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(at + 4));
            Assert.NotEqual(0u, type);
            if (type == 0x23852875)
            {
                return at + 8;
            }

            at += 8 + ((length + 7) & ~7);
        }
    }

    private static async Task<long> BitmapDirectoryOffsetAsync(string path)
        => (long)await ReadU64Async(path, await BitmapsExtensionPayloadAsync(path) + 16);
}
