using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests;

public sealed class RawImageTests
{
    [Fact]
    public async Task Extents_MatchWhatQemuImgMapReports()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", path, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", "-c", "write -z 2M 64k", path);
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", path));
        var expected = map.RootElement.EnumerateArray()
            .Select(e => (Start: e.GetProperty("start").GetInt64(), Length: e.GetProperty("length").GetInt64(), Data: e.GetProperty("data").GetBoolean()))
            .ToList();

        await using var image = RawImage.Open(path, readOnly: true);
        var extents = await image.GetExtentsAsync(0, image.VirtualSize, TestContext.Current.CancellationToken);

        Assert.Equal(expected, extents.Select(e => (e.Offset, e.Length, Data: e.Kind == ExtentKind.Data)).ToList());
        var buffer = new byte[64 << 10];
        await image.ReadAsync(1 << 20, buffer, TestContext.Current.CancellationToken);
        Assert.All(buffer, b => Assert.Equal(0x5a, b));
    }

    /// <summary>
    /// The file's last data region is remembered between extent queries (QEMU's block-status
    /// cache); a discard or write-zeroes that punches a hole inside it must show at once, as
    /// qemu-img map then reports it.
    /// </summary>
    [Fact]
    public async Task Extents_AfterPunchingInsideKnownData_ShowTheHole()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.raw");
        var ct = TestContext.Current.CancellationToken;
        await using (var image = RawImage.Create(path, 4 << 20))
        {
            await image.WriteAsync(0, Enumerable.Repeat((byte)0x5a, 4 << 20).ToArray(), WriteFlags.None, ct);
            var before = await image.GetExtentsAsync(0, image.VirtualSize, ct);
            Assert.Equal([(0L, 4L << 20, true)], before.Select(e => (e.Offset, e.Length, e.Kind == ExtentKind.Data)));

            await image.DiscardAsync(1 << 20, 1 << 20, ct);
            await image.WriteZeroesAsync(3 << 20, 512 << 10, WriteFlags.MayUnmap, ct);
            var after = await image.GetExtentsAsync(0, image.VirtualSize, ct);

            var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", "-U", path));
            var expected = map.RootElement.EnumerateArray()
                .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean()))
                .ToList();
            Assert.Contains((1L << 20, 1L << 20, false), expected);
            Assert.Equal(expected, after.Select(e => (e.Offset, e.Length, e.Kind == ExtentKind.Data)).ToList());
        }
    }
}
