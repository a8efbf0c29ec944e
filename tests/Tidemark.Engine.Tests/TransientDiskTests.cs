using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Transient disks across the ends a domain can meet beside a stop (which the differential test
/// against libvirtd covers): the hand-over to the next host keeps the overlay and the guest's
/// writes in it, the stop after it deletes the overlay; a host killed with the domain running
/// leaves an overlay the next host deletes, as libvirt's qemuProcessStop does for a domain
/// whose QEMU died. The image under the overlay never changes.
/// </summary>
public sealed class TransientDiskTests
{
    private const long Size = 8 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Overlay_OutlivesTheHandOver_AndGoesAtTheStop()
    {
        await using var test = await TestHost.CreateAsync();
        var disk = new TestDisk("vda");
        var image = test.ImagePath("t", disk);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-c", "write -P 0x11 0 64k", image);
        var before = await File.ReadAllBytesAsync(image, Ct);
        var domain = await test.Host.DefineAsync(Transient(test.DomainXml("t", disk)), Ct);
        var overlay = image + ".TRANSIENT-t";

        await domain.StartAsync(Ct);
        Assert.True(File.Exists(overlay));
        Assert.Equal(overlay, domain.Definition.DiskByTarget("vda")!.SourcePath);
        Assert.Equal("qcow2", domain.Definition.DiskByTarget("vda")!.DriverType);
        Assert.DoesNotContain(".TRANSIENT-", domain.GetXml(DomainFormatFlags.Secure), StringComparison.Ordinal);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x22 0 64k");

        await test.Host.CloseKeepingDomainsAsync();
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("t");
        Assert.Equal(DomainState.Running, domain.State);
        Assert.Contains("read 65536/65536 bytes", await Guest.RunAsync(domain.Running!.SocketPath, "vda", "read -P 0x22 0 64k"), StringComparison.Ordinal);
        Assert.Contains("read 65536/65536 bytes", await Guest.RunAsync(domain.Running.SocketPath, "vda", "read -P 0 64k 64k"), StringComparison.Ordinal);
        Assert.True(File.Exists(overlay));

        await domain.DestroyAsync(Ct);
        Assert.False(File.Exists(overlay));
        Assert.Equal(before, await File.ReadAllBytesAsync(image, Ct));
        Assert.Equal(image, domain.Definition.DiskByTarget("vda")!.SourcePath);

        // Started again: a fresh overlay, the guest's writes gone.
        await domain.StartAsync(Ct);
        Assert.Contains("read 65536/65536 bytes", await Guest.RunAsync(domain.Running!.SocketPath, "vda", "read -P 0x11 0 64k"), StringComparison.Ordinal);
        await domain.DestroyAsync(Ct);
    }

    [Fact]
    public async Task OverlayLeftByAKilledHost_IsDeletedAtTheNextStart()
    {
        await using var test = await TestHost.CreateAsync();
        var disk = new TestDisk("vda", "raw");
        var image = test.ImagePath("k", disk);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", image, "8M");
        var domain = await test.Host.DefineAsync(Transient(test.DomainXml("k", disk)), Ct);
        await domain.StartAsync(Ct);
        var overlay = image + ".TRANSIENT-k";
        Assert.True(File.Exists(overlay));
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x33 0 64k");

        // The old host is left as a kill leaves it: its domain's socket and overlay in place.
        var killed = test.Host;
        await test.ReopenAfterCrashAsync();
        Assert.False(File.Exists(overlay));
        domain = test.Host.LookupByName("k");
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.True(domain.EndedByHostCrash);
        await killed.DisposeAsync();
        Assert.Contains("read 65536/65536 bytes", await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "read -P 0 0 64k", image), StringComparison.Ordinal);
    }

    private static string Transient(string xml) => xml.Replace("bus='virtio'/>", "bus='virtio'/>\n      <transient/>", StringComparison.Ordinal);
}
