using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A disk whose source names storage slices (<c>&lt;slices&gt;&lt;slice type='storage' offset=… size=…/&gt;</c>):
/// QEMU shows the guest the slice alone, which Tidemark does not implement, so the start is
/// refused rather than the whole file served; nothing stays open.
/// </summary>
public sealed class SlicedDiskTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DiskWithSlices_IsRefusedAtStart_NotServedWhole()
    {
        await using var test = await TestHost.CreateAsync();
        var disk = new TestDisk("vda", "raw");
        var image = test.ImagePath("s", disk);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", image, "16M");
        var xml = test.DomainXml("s", disk).Replace($"<source file='{image}'/>", $"<source file='{image}'><slices><slice type='storage' offset='8388608' size='8388608'/></slices></source>", StringComparison.Ordinal);
        Assert.Contains("<slices>", xml, StringComparison.Ordinal);
        var domain = await test.Host.DefineAsync(xml, Ct);

        var e = await Assert.ThrowsAsync<EngineException>(() => domain.StartAsync(Ct));
        Assert.Equal(EngineErrorReason.UnsupportedDisk, e.Reason);
        Assert.Equal("unsupported configuration: disk 'vda': storage slices (<slices>) are not supported", e.Message);
        Assert.Equal(DomainState.ShutOff, domain.State);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write 0 4k", image);
    }
}
