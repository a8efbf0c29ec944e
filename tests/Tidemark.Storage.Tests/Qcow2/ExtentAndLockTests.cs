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
}
