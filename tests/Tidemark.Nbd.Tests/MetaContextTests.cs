using Tidemark.Nbd.Client;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>Context selection as qemu 7.2 answers LIST and SET (formats.md §4.10), URIs, and the in-memory dirty map.</summary>
public sealed class MetaContextTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("nbd-meta");
    private RawImage _image = null!;
    private NbdExport _export = null!;

    public ValueTask InitializeAsync()
    {
        _image = RawImage.Create(_dir.File("d.raw"), 1 << 20);
        _export = new NbdExport("vda", _image)
        {
            AllocationDepth = true,
            DirtyBitmaps = [new DirtyExtentMap("b0", 1 << 20, []), new DirtyExtentMap("b1", 1 << 20, [])],
        };
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _image.DisposeAsync();
        _dir.Dispose();
    }

    [Theory]
    [InlineData(new string[0], "base:allocation qemu:allocation-depth qemu:dirty-bitmap:b0 qemu:dirty-bitmap:b1")]
    [InlineData(new[] { "base:" }, "base:allocation")]
    [InlineData(new[] { "qemu:" }, "qemu:allocation-depth qemu:dirty-bitmap:b0 qemu:dirty-bitmap:b1")]
    [InlineData(new[] { "qemu:dirty-bitmap:" }, "qemu:dirty-bitmap:b0 qemu:dirty-bitmap:b1")]
    [InlineData(new[] { "qemu:dirty-bitmap:b1", "nosuch:thing" }, "qemu:dirty-bitmap:b1")]
    public void List_QueriesActAsWildcards(string[] queries, string expected)
        => Assert.Equal(expected, string.Join(' ', MetaContext.Select(_export, queries, listing: true).Select(c => c.Name)));

    [Fact]
    public void Set_OnlyExactNamesSelect_IdsAsQemu()
    {
        var selected = MetaContext.Select(_export, ["qemu:dirty-bitmap:b1", "base:", "qemu:dirty-bitmap:nosuch", "base:allocation", "base:allocation"], listing: false);
        Assert.Equal([(0u, "base:allocation"), (3u, "qemu:dirty-bitmap:b1")], selected.Select(c => (c.Id, c.Name)));
    }

    [Fact]
    public async Task DirtyExtentMap_MergesAndSplitsAtTheRequest()
    {
        var map = new DirtyExtentMap("b", 1000, [(100, 50), (140, 60), (500, 10), (0, 0)]);
        Assert.Equal(
            [new DirtyExtent(120, 80, true), new DirtyExtent(200, 300, false), new DirtyExtent(500, 5, true)],
            await map.GetDirtyExtentsAsync(120, 385, TestContext.Current.CancellationToken));
        Assert.Equal([new DirtyExtent(0, 1000, false)], await new DirtyExtentMap("c", 1000, []).GetDirtyExtentsAsync(0, 1000, TestContext.Current.CancellationToken));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DirtyExtentMap("d", 10, [(5, 10)]));
    }

    [Theory]
    [InlineData("nbd://127.0.0.1:10900/vda", "127.0.0.1:10900", "vda", false)]
    [InlineData("nbd://localhost/", "Unspecified/localhost:10809", "", false)]
    [InlineData("nbds://localhost:1/x?tls-certificates=/etc/pki", "Unspecified/localhost:1", "x", true)]
    [InlineData("nbd+unix:///disk%20one?socket=/tmp/a.sock", "/tmp/a.sock", "disk one", false)]
    public void Uri_Parses(string text, string endPoint, string export, bool tls)
    {
        var uri = NbdUri.Parse(text);
        Assert.Equal((endPoint, export, tls), (uri.EndPoint.ToString(), uri.ExportName, uri.Tls));
    }

    [Theory]
    [InlineData("http://x/", "unknown scheme 'http'")]
    [InlineData("nbd+unix:///vda", "needs ?socket=PATH")]
    [InlineData("not a uri", "is not a URI")]
    public void Uri_Bad_NamesWhatIsWrong(string text, string why)
    {
        var e = Assert.Throws<NbdException>(() => NbdUri.Parse(text));
        Assert.Equal(NbdErrorReason.InvalidUri, e.Reason);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Limits_RefuseUnsafeValues()
    {
        var limits = new NbdServerLimits();
        Assert.Throws<ArgumentOutOfRangeException>(() => limits.MaxPayloadLength = 1024);
        Assert.Throws<ArgumentOutOfRangeException>(() => limits.MaxExtentsPerReply = (1 << 20) + 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => limits.HandshakeTimeout = TimeSpan.Zero);
        Assert.Equal(32 << 20, limits.MaxPayloadLength);
    }
}
