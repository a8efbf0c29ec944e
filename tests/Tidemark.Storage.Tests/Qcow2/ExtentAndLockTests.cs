using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

public sealed class ExtentAndLockTests
{
    [Fact]
    public async Task Extents_MatchQemuImgMap_AcrossBackingChain()
    {
        using var dir = new TempDirectory();
        var basePath = dir.File("base.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", basePath, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -z 2M 1M", "-c", "write -P 2 6M 64k", basePath);
        var top = dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 3 512k 128k", "-c", "write -z 6M 64k", "-c", "write -P 4 7M 64k", top);

        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", top)).RootElement;
        var expected = map.EnumerateArray()
            .Select(e => (Start: e.GetProperty("start").GetInt64(), Length: e.GetProperty("length").GetInt64(), Depth: e.GetProperty("present").GetBoolean() ? e.GetProperty("depth").GetInt32() + 1 : 0, Zero: e.GetProperty("zero").GetBoolean(), Data: e.GetProperty("data").GetBoolean()))
            .ToList();

        await using var image = await Qcow2Image.OpenAsync(top, readOnly: true, TestContext.Current.CancellationToken);
        var actual = new List<BlockExtent>();
        for (long at = 0; at < image.VirtualSize;)
        {
            var part = await image.GetExtentsAsync(at, image.VirtualSize - at, TestContext.Current.CancellationToken);
            actual.AddRange(part);
            at = part[^1].End;
        }

        Assert.Equal(expected, actual.Select(e => (e.Offset, e.Length, e.Depth, Zero: (e.Kind & ExtentKind.Zero) != 0, Data: (e.Kind & ExtentKind.Hole) == 0)).ToList());
    }

    [Theory]
    [InlineData("extended_l2=on,cluster_size=131072")]
    [InlineData("cluster_size=512")]
    [InlineData("compat=0.10,cluster_size=4096")]
    public async Task Extents_MatchQemuImgMap_ForGeometries(string options)
    {
        using var dir = new TempDirectory();
        var path = dir.File("g.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", options, path, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 4k 4k", "-c", "write -z 64k 8k", "-c", "write 1M 300k", "-c", "write -z 2M 1M", "-c", "write 3M 4k", path);
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path)).RootElement;
        var expected = map.EnumerateArray()
            .Select(e => (Start: e.GetProperty("start").GetInt64(), Length: e.GetProperty("length").GetInt64(), Present: e.GetProperty("present").GetBoolean(), Zero: e.GetProperty("zero").GetBoolean(), Data: e.GetProperty("data").GetBoolean()))
            .Aggregate(new List<(long Start, long Length, bool Present, bool Zero, bool Data)>(), (list, e) =>
            {
                // qemu-img map also splits where host offsets jump; only the guest view is compared.
                if (list.Count > 0 && list[^1].Start + list[^1].Length == e.Start && (list[^1].Present, list[^1].Zero, list[^1].Data) == (e.Present, e.Zero, e.Data))
                {
                    list[^1] = list[^1] with { Length = list[^1].Length + e.Length };
                }
                else
                {
                    list.Add(e);
                }

                return list;
            });

        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken);
        var actual = new List<BlockExtent>();
        for (long at = 0; at < image.VirtualSize;)
        {
            var part = await image.GetExtentsAsync(at, image.VirtualSize - at, TestContext.Current.CancellationToken);
            foreach (var e in part)
            {
                if (actual.Count > 0 && actual[^1].End == e.Offset && actual[^1].Kind == e.Kind && actual[^1].Depth == e.Depth)
                {
                    actual[^1] = actual[^1] with { Length = actual[^1].Length + e.Length };
                }
                else
                {
                    actual.Add(e);
                }
            }

            at = part[^1].End;
        }

        Assert.Equal(expected, actual.Select(e => (e.Offset, e.Length, Present: e.Depth != 0, Zero: (e.Kind & ExtentKind.Zero) != 0, Data: (e.Kind & ExtentKind.Hole) == 0)).ToList());
    }

    [Fact]
    public async Task ReadWriteOpen_LocksOutQemuWriters_AndQemuLocksOutTidemark()
    {
        using var dir = new TempDirectory();
        var path = dir.File("l.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, TestContext.Current.CancellationToken))
        {
            var write = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 4k", path]);
            Assert.NotEqual(0, write.ExitCode);
            Assert.Contains("Failed to get \"write\" lock", write.Stderr + write.Stdout, StringComparison.Ordinal);
            var info = await Peer.RunAsync("qemu-img", ["info", path]);
            Assert.NotEqual(0, info.ExitCode);
            Assert.Contains("Failed to get shared \"write\" lock", info.Stderr, StringComparison.Ordinal);

            // Read-only sharing, as qemu-img info -U does, still works.
            await Peer.RunCheckedAsync("qemu-img", "info", "-U", path);
        }

        await using (var reader = await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken))
        {
            await Peer.RunCheckedAsync("qemu-img", "info", path);
            var write = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 4k", path]);
            Assert.NotEqual(0, write.ExitCode);
        }

        // qemu-io holds the image read-write while it waits on its standard input.
        var holder = new System.Diagnostics.ProcessStartInfo(Peer.Require("qemu-io"), ["-f", "qcow2", path]) { RedirectStandardInput = true, RedirectStandardOutput = true };
        using var process = System.Diagnostics.Process.Start(holder)!;
        try
        {
            await process.StandardInput.WriteLineAsync("read 0 512");
            await process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken);
            var e = await Assert.ThrowsAsync<StorageException>(async () => await Qcow2Image.OpenAsync(path, readOnly: false, TestContext.Current.CancellationToken));
            Assert.Equal(StorageErrorReason.Locked, e.Reason);
            Assert.Contains("write", e.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<StorageException>(async () => await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken));
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task RawImage_TakesTheSameLocks()
    {
        using var dir = new TempDirectory();
        var path = dir.File("r.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", path, "1M");
        await using (RawImage.Open(path, readOnly: false))
        {
            var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write 0 4k", path]);
            Assert.NotEqual(0, write.ExitCode);
            Assert.Contains("Failed to get \"write\" lock", write.Stderr + write.Stdout, StringComparison.Ordinal);
            var e = Assert.Throws<StorageException>(() => RawImage.Open(path, readOnly: false));
            Assert.Equal(StorageErrorReason.Locked, e.Reason);
        }

        // Released on close: QEMU writes again.
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write 0 4k", path);
    }

    /// <summary>
    /// A raw image opened sharing writes (a shareable disk, QEMU's share-rw=on) lets QEMU and
    /// another shared opener write it too; denying others the write permission (a backup's
    /// instant) fails while someone writes, and once taken keeps QEMU's writers out until it is
    /// given up.
    /// </summary>
    [Fact]
    public async Task RawImage_SharingWrites_LetsOthersWrite_UntilWritersAreExcluded()
    {
        using var dir = new TempDirectory();
        var path = dir.File("s.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", path, "1M");
        await using (var first = RawImage.Open(path, readOnly: false, shareWrites: true))
        {
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write 0 4k", path);
            await using (RawImage.Open(path, readOnly: false, shareWrites: true))
            {
                var e = Assert.Throws<StorageException>(() => first.ExcludeOtherWriters());
                Assert.Equal(StorageErrorReason.Locked, e.Reason);
                Assert.Contains("Failed to get shared \"write\" lock", e.Message, StringComparison.Ordinal);

                // The failed attempt denied nothing: QEMU still writes.
                await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write 4k 4k", path);
            }

            using (var exclusion = first.ExcludeOtherWriters())
            {
                Assert.NotNull(exclusion);
                var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write 0 4k", path]);
                Assert.NotEqual(0, write.ExitCode);
                Assert.Contains("Failed to get \"write\" lock", write.Stderr + write.Stdout, StringComparison.Ordinal);
                Assert.Throws<StorageException>(() => RawImage.Open(path, readOnly: false, shareWrites: true));
            }

            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write 0 4k", path);
        }

        // An image opened without sharing denies writers already: nothing more to take.
        await using var exclusive = RawImage.Open(path, readOnly: false);
        Assert.Null(exclusive.ExcludeOtherWriters());
    }
}
