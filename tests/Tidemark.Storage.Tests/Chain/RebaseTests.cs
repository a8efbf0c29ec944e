using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// <see cref="ImageRebase"/> against <c>qemu-img rebase</c> on copies of the same chain: the same
/// guest content as before the rebase (<c>qemu-img compare</c> against an untouched copy), the
/// same metadata (<c>qemu-img info --output=json</c>, and for -u the header cluster byte for
/// byte), and <c>qemu-img check</c> clean.
/// </summary>
public sealed class RebaseTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string, int, bool, bool> Chains => new()
    {
        { "0.10", 65536, false, false },
        { "0.10", 524288, false, true },
        { "1.1", 65536, true, true },
        { "1.1", 524288, true, false },
        { "1.1", 4096, true, true },
    };

    [Theory]
    [MemberData(nameof(Chains))]
    public async Task Safe_OntoAnImageOfTheChain_KeepsContent_AsQemuImgDoes(string compat, int clusterSize, bool bitmaps, bool compressed)
        => await SafeRebaseAsync(compat, clusterSize, bitmaps, compressed, "base.qcow2");

    [Theory]
    [MemberData(nameof(Chains))]
    public async Task Safe_OntoAnUnrelatedImage_KeepsContent_AsQemuImgDoes(string compat, int clusterSize, bool bitmaps, bool compressed)
        => await SafeRebaseAsync(compat, clusterSize, bitmaps, compressed, "other.qcow2");

    [Theory]
    [InlineData("0.10", 65536)]
    [InlineData("1.1", 524288)]
    public async Task Safe_OntoNothing_Flattens_AsQemuImgDoes(string compat, int clusterSize)
        => await SafeRebaseAsync(compat, clusterSize, bitmaps: false, compressed: true, string.Empty);

    private static async Task SafeRebaseAsync(string compat, int clusterSize, bool bitmaps, bool compressed, string backing)
    {
        using var dir = new TempDirectory();
        var original = Path.Combine(dir.Path, "original");
        Directory.CreateDirectory(original);
        await ChainImages.CreateAsync(original, compat, clusterSize, bitmaps, compressed);
        var qemu = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "qemu"));
        var tidemark = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "tidemark"));

        string[] format = backing.Length == 0 ? [] : ["-F", "qcow2"];
        await Peer.RunCheckedAsync("qemu-img", ["rebase", "-q", "-b", backing, .. format, Path.Combine(qemu, "top.qcow2")]);
        await ImageRebase.RebaseAsync(Path.Combine(tidemark, "top.qcow2"), ImageFormat.Qcow2, backing, backing.Length == 0 ? null : ImageFormat.Qcow2, safe: true, Ct);

        var top = Path.Combine(tidemark, "top.qcow2");
        await ChainImages.AssertCleanAsync(top);
        await ChainImages.AssertSameContentAsync(Path.Combine(original, "top.qcow2"), top);
        await ChainImages.AssertSameContentAsync(Path.Combine(qemu, "top.qcow2"), top);
        Assert.Equal(await ChainImages.InfoAsync(Path.Combine(qemu, "top.qcow2")), await ChainImages.InfoAsync(top));

        // The images below are read, never written.
        foreach (var name in new[] { "base.qcow2", "mid.qcow2", "other.qcow2" })
        {
            Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(original, name), Ct), await File.ReadAllBytesAsync(Path.Combine(tidemark, name), Ct));
        }
    }

    [Theory]
    [InlineData("0.10", 65536, "other.qcow2")]
    [InlineData("1.1", 65536, "other.qcow2")]
    [InlineData("1.1", 524288, "../elsewhere/renamed-base.qcow2")]
    [InlineData("1.1", 4096, "")]
    public async Task Unsafe_WritesTheHeaderQemuImgWrites(string compat, int clusterSize, string backing)
    {
        using var dir = new TempDirectory();
        var original = Path.Combine(dir.Path, "original");
        Directory.CreateDirectory(original);
        await ChainImages.CreateAsync(original, compat, clusterSize, bitmaps: compat == "1.1", compressed: false);
        var qemu = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "qemu"));
        var tidemark = ChainImages.CopyDirectory(original, Path.Combine(dir.Path, "tidemark"));

        // The moved base (a raw copy of base's content) both sides' headers name; qemu-img check needs it.
        Directory.CreateDirectory(dir.File("elsewhere"));
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", Path.Combine(original, "base.qcow2"), dir.File("elsewhere/renamed-base.qcow2"));

        string[] format = backing.Length == 0 ? [] : ["-F", "raw"];
        await Peer.RunCheckedAsync("qemu-img", ["rebase", "-u", "-b", backing, .. format, Path.Combine(qemu, "top.qcow2")]);
        await ImageRebase.RebaseAsync(Path.Combine(tidemark, "top.qcow2"), null, backing, backing.Length == 0 ? null : ImageFormat.Raw, safe: false, Ct);

        var expected = await File.ReadAllBytesAsync(Path.Combine(qemu, "top.qcow2"), Ct);
        var actual = await File.ReadAllBytesAsync(Path.Combine(tidemark, "top.qcow2"), Ct);
        Assert.Equal(expected.AsSpan(0, clusterSize).ToArray(), actual.AsSpan(0, clusterSize).ToArray());
        if (compat == "0.10")
        {
            // Without bitmaps nothing but the header is written; with them, opening for writing
            // stores them again at close, where each allocator puts them (as ImageResizeCommandTests notes).
            Assert.Equal(expected.Length, actual.Length);
        }

        Assert.Equal(await ChainImages.InfoAsync(Path.Combine(qemu, "top.qcow2")), await ChainImages.InfoAsync(Path.Combine(tidemark, "top.qcow2")));
        await ChainImages.AssertCleanAsync(Path.Combine(tidemark, "top.qcow2"));
    }

    [Fact]
    public async Task Refusals_NameTheProblem_AndLeaveTheFilesUnchanged()
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, "1.1", 65536, bitmaps: true, compressed: false);
        var raw = dir.File("disk.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", raw, "1M");
        var before = Directory.GetFiles(dir.Path).ToDictionary(f => f, File.ReadAllBytes);
        var top = dir.File("top.qcow2");
        var @base = dir.File("base.qcow2");

        async Task<string> RefusedAsync(Func<ValueTask> rebase) => (await Assert.ThrowsAsync<StorageException>(async () => await rebase())).Message;

        // qemu-img 7.2's words for each refusal.
        Assert.Equal("Could not change the backing file to 'base.qcow2': Operation not supported", await RefusedAsync(() => ImageRebase.RebaseAsync(raw, null, "base.qcow2", ImageFormat.Qcow2, safe: true, Ct)));
        Assert.Equal("Could not change the backing file to 'other.qcow2': backing format must be specified", await RefusedAsync(() => ImageRebase.RebaseAsync(top, null, "other.qcow2", null, safe: false, Ct)));
        Assert.Equal("Could not change the backing file to 'other.qcow2': backing format must be specified", await RefusedAsync(() => ImageRebase.RebaseAsync(top, null, "other.qcow2", null, safe: true, Ct)));
        Assert.Equal($"Could not open new backing file 'missing.qcow2': Could not open '{dir.File("missing.qcow2")}': No such file or directory", await RefusedAsync(() => ImageRebase.RebaseAsync(top, null, "missing.qcow2", ImageFormat.Qcow2, safe: true, Ct)));

        // A loop, directly or through the new backing file's own chain; qemu-img -u would write it.
        Assert.Equal("Backing file 'top.qcow2' creates an infinite loop.", await RefusedAsync(() => ImageRebase.RebaseAsync(@base, null, "top.qcow2", ImageFormat.Qcow2, safe: false, Ct)));
        Assert.Equal("Backing file 'top.qcow2' creates an infinite loop.", await RefusedAsync(() => ImageRebase.RebaseAsync(@base, null, "top.qcow2", ImageFormat.Qcow2, safe: true, Ct)));
        Assert.Equal("Backing file 'top.qcow2' creates an infinite loop.", await RefusedAsync(() => ImageRebase.RebaseAsync(top, null, "top.qcow2", ImageFormat.Qcow2, safe: false, Ct)));

        foreach (var (file, bytes) in before)
        {
            var now = await File.ReadAllBytesAsync(file, Ct);
            Assert.True(bytes.AsSpan().SequenceEqual(now), $"{file} changed");
        }
    }
}
