using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// <see cref="ImageCommit"/> against <c>qemu-img commit</c> on copies of the same chain: the top
/// reads as before (<c>qemu-img compare</c> against an untouched copy), the base holds what
/// qemu-img's base holds, the top is emptied as qemu-img empties it (or kept with -d and -b),
/// the base's bitmaps record the commit as QEMU's do, and every image passes
/// <c>qemu-img check</c>.
/// </summary>
public sealed class CommitTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("0.10", 65536, false, false, null, false)]
    [InlineData("0.10", 524288, false, true, null, true)]
    [InlineData("1.1", 65536, true, true, null, false)]
    [InlineData("1.1", 65536, true, false, null, true)]
    [InlineData("1.1", 524288, true, false, "base.qcow2", false)]
    [InlineData("1.1", 4096, true, true, "base.qcow2", false)]
    [InlineData("0.10", 65536, false, true, "mid.qcow2", false)]
    public async Task Commit_KeepsTheTopsContent_AsQemuImgDoes(string compat, int clusterSize, bool bitmaps, bool compressed, string? baseName, bool drop)
    {
        using var dir = new TempDirectory();
        var original = Path.Combine(dir.Path, "original");
        Directory.CreateDirectory(original);
        await ChainImages.CreateAsync(original, compat, clusterSize, bitmaps, compressed);
        var qemu = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "qemu"));
        var tidemark = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "tidemark"));

        string[] options = [.. baseName is null ? [] : new[] { "-b", Path.Combine(qemu, baseName) }, .. drop ? new[] { "-d" } : []];
        Assert.Equal("Image committed.\n", await Peer.RunCheckedAsync("qemu-img", ["commit", .. options, Path.Combine(qemu, "top.qcow2")]));
        await ImageCommit.CommitAsync(Path.Combine(tidemark, "top.qcow2"), null, baseName is null ? null : Path.Combine(tidemark, baseName), drop, Ct);

        var top = Path.Combine(tidemark, "top.qcow2");
        await ChainImages.AssertSameContentAsync(Path.Combine(original, "top.qcow2"), top);
        foreach (var name in new[] { "base.qcow2", "mid.qcow2", "top.qcow2" })
        {
            await ChainImages.AssertCleanAsync(Path.Combine(tidemark, name));
            Assert.Equal(await ChainImages.InfoAsync(Path.Combine(qemu, name)), await ChainImages.InfoAsync(Path.Combine(tidemark, name)));
        }

        var committedInto = baseName ?? "mid.qcow2";
        await ChainImages.AssertSameContentAsync(Path.Combine(qemu, committedInto), Path.Combine(tidemark, committedInto));

        // Emptied exactly when qemu-img empties: the top then allocates nothing, as qemu-img map shows.
        var emptied = baseName is null && !drop;
        Assert.Equal(await MapAsync(Path.Combine(qemu, "top.qcow2")), await MapAsync(top));
        Assert.Equal(emptied, !(await MapAsync(top)).Contains("depth 0 ", StringComparison.Ordinal));
        if (bitmaps)
        {
            // b-base (enabled) recorded the commit's writes into base, b-off (disabled) did not:
            // both as QEMU left them.
            Assert.Equal(await BitmapDumpAsync(Path.Combine(qemu, "base.qcow2")), await BitmapDumpAsync(Path.Combine(tidemark, "base.qcow2")));
        }
    }

    [Fact]
    public async Task Refusals_NameTheProblem_AndLeaveTheFilesUnchanged()
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, "1.1", 65536, bitmaps: true, compressed: false);
        var before = Directory.GetFiles(dir.Path).ToDictionary(f => f, File.ReadAllBytes);

        async Task<string> RefusedAsync(Func<ValueTask> commit) => (await Assert.ThrowsAsync<StorageException>(async () => await commit())).Message;

        Assert.Equal("Image does not have a backing file", await RefusedAsync(() => ImageCommit.CommitAsync(dir.File("other.qcow2"), null, null, false, Ct)));
        Assert.Equal($"Did not find 'other.qcow2' in the backing chain of '{dir.File("top.qcow2")}'", await RefusedAsync(() => ImageCommit.CommitAsync(dir.File("top.qcow2"), null, "other.qcow2", false, Ct)));
        Assert.Equal($"Did not find 'top.qcow2' in the backing chain of '{dir.File("top.qcow2")}'", await RefusedAsync(() => ImageCommit.CommitAsync(dir.File("top.qcow2"), null, "top.qcow2", false, Ct)));

        foreach (var (file, bytes) in before)
        {
            var now = await File.ReadAllBytesAsync(file, Ct);
            Assert.True(bytes.AsSpan().SequenceEqual(now), $"{file} changed");
        }
    }

    /// <summary>
    /// <c>qemu-img map --output=json</c> without host offsets, adjacent runs of the same kind
    /// joined: which layer (depth, 0 for the top) provides each range and whether it is data or
    /// zero. Host offsets depend on the order each tool writes clusters in, which is not metadata.
    /// </summary>
    private static async Task<string> MapAsync(string path)
    {
        var runs = new List<(long Start, long Length, string Kind)>();
        foreach (var node in System.Text.Json.Nodes.JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path))!.AsArray())
        {
            var start = node!["start"]!.GetValue<long>();
            var length = node["length"]!.GetValue<long>();
            var kind = $"depth {node["depth"]} present {node["present"]} zero {node["zero"]} data {node["data"]}";
            if (runs.Count > 0 && runs[^1].Kind == kind && runs[^1].Start + runs[^1].Length == start)
            {
                runs[^1] = (runs[^1].Start, runs[^1].Length + length, kind);
            }
            else
            {
                runs.Add((start, length, kind));
            }
        }

        return string.Join('\n', runs.Select(r => $"{r.Start} {r.Length} {r.Kind}"));
    }

    /// <summary>Each bitmap's dirty ranges as QEMU exports them (qemu-nbd -B, read by nbdinfo --map), after the info line.</summary>
    private static async Task<string> BitmapDumpAsync(string path)
    {
        var lines = new List<string> { await ChainImages.InfoAsync(path) };
        foreach (var bitmap in new[] { "b-base", "b-off" })
        {
            var map = await Peer.RunCheckedAsync("nbdinfo", $"--map=qemu:dirty-bitmap:{bitmap}", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, path, "]");
            lines.Add($"{bitmap}:\n{map}");
        }

        return string.Join('\n', lines);
    }
}
