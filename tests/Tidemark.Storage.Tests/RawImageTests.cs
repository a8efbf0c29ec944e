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
}
