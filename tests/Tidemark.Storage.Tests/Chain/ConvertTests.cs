using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// The pieces of <c>image convert -B</c>, <c>-n</c>, <c>--target-is-zero</c> and
/// <c>--bitmaps</c> against <c>qemu-img convert</c> with the same options on the same source:
/// the target reads as the source (<c>qemu-img compare</c>), passes <c>qemu-img check</c>, shows
/// qemu-img's metadata, and -B writes no more than qemu-img writes.
/// </summary>
public sealed class ConvertTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("0.10", 65536, "top.qcow2", "mid.qcow2", true)]
    [InlineData("1.1", 524288, "top.qcow2", "mid.qcow2", true)]
    [InlineData("1.1", 65536, "top.qcow2", "base.qcow2", false)]
    [InlineData("1.1", 4096, "base.qcow2", "other.qcow2", false)]
    public async Task WithBacking_WritesOnlyWhatDiffers_AndReadsAsTheSource(string compat, int clusterSize, string source, string backing, bool sharesBacking)
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, compat, clusterSize, bitmaps: false, compressed: true);
        var qemu = dir.File("qemu.qcow2");
        var tidemark = dir.File("tidemark.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "qcow2", "-o", $"compat={compat},cluster_size={clusterSize}", "-B", backing, "-F", "qcow2", dir.File(source), qemu);

        await using (await Qcow2Image.CreateAsync(tidemark, new Qcow2CreateOptions { Size = 8 << 20, ClusterSize = clusterSize, Version = compat == "1.1" ? 3 : 2, BackingFile = backing, BackingFormat = ImageFormat.Qcow2 }, Ct))
        {
        }

        await using (var from = await Qcow2Image.OpenAsync(dir.File(source), readOnly: true, Ct))
        await using (var to = await Qcow2Image.OpenAsync(tidemark, readOnly: false, Ct))
        {
            await DifferenceCopy.CopyAsync(from, to, sharesBacking, Ct);
        }

        await ChainImages.AssertCleanAsync(tidemark);
        await ChainImages.AssertSameContentAsync(dir.File(source), tidemark);
        Assert.Equal(await ChainImages.InfoAsync(qemu), await ChainImages.InfoAsync(tidemark));
        if (source == "base.qcow2")
        {
            // A source without a backing file: qemu-img writes all it allocates, Tidemark no more.
            // (With a backing file that is not the source's own, qemu-img skips what the source's
            // top leaves unallocated and its target reads differently; Tidemark compares instead.)
            Assert.True(await AllocatedBytesAsync(tidemark) <= await AllocatedBytesAsync(qemu), "the target allocates more than qemu-img's");
        }

        if (sharesBacking)
        {
            // On the source's own backing file qemu-img copies exactly the top's clusters; so does Tidemark here.
            Assert.Equal(await AllocatedBytesAsync(qemu), await AllocatedBytesAsync(tidemark));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ExistingTarget_ReadsAsTheSource_AsQemuImgConvertN(bool targetIsZero)
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, "1.1", 65536, bitmaps: false, compressed: true);
        var qemu = dir.File("qemu.qcow2");
        var tidemark = dir.File("tidemark.qcow2");
        foreach (var target in new[] { qemu, tidemark })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", target, ChainImages.Size);
            if (!targetIsZero)
            {
                // Old content everywhere, so every zero of the source must be written.
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 8M", target);
            }
        }

        await Peer.RunCheckedAsync("qemu-img", ["convert", "-n", .. targetIsZero ? new[] { "--target-is-zero" } : [], "-O", "qcow2", dir.File("top.qcow2"), qemu]);
        await using (var from = await Qcow2Image.OpenAsync(dir.File("top.qcow2"), readOnly: true, Ct))
        await using (var to = await Qcow2Image.OpenAsync(tidemark, readOnly: false, Ct))
        {
            await SparseCopy.CopyAsync(from, to, compress: false, targetReadsZeroes: targetIsZero, Ct);
        }

        await ChainImages.AssertCleanAsync(tidemark);
        await ChainImages.AssertSameContentAsync(qemu, tidemark);
        var head = dir.File("head.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", dir.File("top.qcow2"), head);
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "qcow2", head, tidemark);
    }

    [Fact]
    public async Task Bitmaps_AreCopiedAsQemuImgConvertBitmapsCopiesThem()
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, "1.1", 65536, bitmaps: true, compressed: false);
        var source = dir.File("base.qcow2");
        var qemu = dir.File("qemu.qcow2");
        var tidemark = dir.File("tidemark.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "convert", "--bitmaps", "-O", "qcow2", source, qemu);

        await using (await Qcow2Image.CreateAsync(tidemark, new Qcow2CreateOptions { Size = 8 << 20 }, Ct))
        {
        }

        await using (var from = await Qcow2Image.OpenAsync(source, readOnly: true, Ct))
        await using (var to = await Qcow2Image.OpenAsync(tidemark, readOnly: false, Ct))
        {
            BitmapCopy.CheckSource(from, skipBroken: false);
            BitmapCopy.CheckTarget(to);
            await SparseCopy.CopyAsync(from, to, compress: false, Ct);
            Assert.Empty(await BitmapCopy.CopyAsync(from, to, skipBroken: false, Ct));
        }

        await ChainImages.AssertCleanAsync(tidemark);
        await ChainImages.AssertSameContentAsync(qemu, tidemark);
        Assert.Equal(await ChainImages.InfoAsync(qemu), await ChainImages.InfoAsync(tidemark));
        foreach (var bitmap in new[] { "b-base", "b-off" })
        {
            Assert.Equal(await DirtyMapAsync(qemu, bitmap), await DirtyMapAsync(tidemark, bitmap));
        }

        // A second copy into the same target fails on the first name, in qemu-img's words.
        await using (var from = await Qcow2Image.OpenAsync(source, readOnly: true, Ct))
        await using (var to = await Qcow2Image.OpenAsync(tidemark, readOnly: false, Ct))
        {
            var e = await Assert.ThrowsAsync<StorageException>(async () => await BitmapCopy.CopyAsync(from, to, skipBroken: false, Ct));
            Assert.Equal("Failed to create bitmap b-base: Bitmap already exists: b-base", e.Message);
        }
    }

    [Fact]
    public async Task Bitmaps_RefusedAsQemuImgRefusesThem()
    {
        using var dir = new TempDirectory();
        await ChainImages.CreateAsync(dir.Path, "1.1", 65536, bitmaps: true, compressed: false);
        var v2 = dir.File("v2.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, "8M");

        // An in-use bitmap: qemu-io marks it IN_USE for writing and never stores it.
        var broken = dir.File("broken.qcow2");
        File.Copy(dir.File("base.qcow2"), broken);
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "abort", broken]);

        var qemuV2 = await Peer.RunAsync("qemu-img", ["convert", "--bitmaps", "-O", "qcow2", v2, dir.File("out1.qcow2")]);
        var qemuBroken = await Peer.RunAsync("qemu-img", ["convert", "--bitmaps", "-O", "qcow2", broken, dir.File("out2.qcow2")]);
        Assert.Equal(1, qemuV2.ExitCode);
        Assert.Equal(1, qemuBroken.ExitCode);

        await using (var from = await Qcow2Image.OpenAsync(v2, readOnly: true, Ct))
        {
            Assert.Equal(qemuV2.Stderr, $"qemu-img: {Assert.Throws<StorageException>(() => BitmapCopy.CheckSource(from, skipBroken: false)).Message}\n");
            Assert.Equal("Format driver 'qcow2' does not support bitmaps", Assert.Throws<StorageException>(() => BitmapCopy.CheckTarget(from)).Message);
        }

        await using (var from = await Qcow2Image.OpenAsync(broken, readOnly: true, Ct))
        {
            Assert.Equal(qemuBroken.Stderr, $"qemu-img: {Assert.Throws<StorageException>(() => BitmapCopy.CheckSource(from, skipBroken: false)).Message}\n");
            BitmapCopy.CheckSource(from, skipBroken: true);
        }
    }

    private static async Task<long> AllocatedBytesAsync(string path)
    {
        var map = System.Text.Json.Nodes.JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path))!.AsArray();
        return map.Where(n => n!["depth"]!.GetValue<int>() == 0 && n["present"]!.GetValue<bool>()).Sum(n => n!["length"]!.GetValue<long>());
    }

    private static Task<string> DirtyMapAsync(string path, string bitmap)
        => Peer.RunCheckedAsync("nbdinfo", $"--map=qemu:dirty-bitmap:{bitmap}", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, path, "]");
}
