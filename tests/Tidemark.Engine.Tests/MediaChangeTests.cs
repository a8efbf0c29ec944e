using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A running drive's media changed (the engine side of virsh change-media and update-device):
/// new media is served under the drive's name at once and the old one's guests lose it; an
/// eject leaves the drive without an export; the persistent definition keeps its own media
/// until a CONFIG update; media that cannot be opened leaves the old media in the drive; and
/// every refusal changes nothing and moves no tray.
/// </summary>
public sealed class MediaChangeTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InsertSwapAndEject_ServeTheNewMedia_AndTheDefinitionKeepsItsOwn()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, images) = await DefineAsync(test);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        await ReadAsync(socket, "hdc", "0x11");
        Assert.Null(domain.Running.DiskByTarget("hdd"));

        var trays = new List<string>();
        await domain.UpdateDeviceAsync(Cdrom("hdd", images.Cd2), DeviceModifyFlags.Live, trays.Add, Ct);
        await ReadAsync(socket, "hdd", "0x22");

        // A guest reading the old media loses its connection when the tray opens.
        await using (var reader = await Guest.ConnectAsync(socket, "hdc", Ct))
        {
            var buffer = new byte[4096];
            await reader.ReadAsync(0, buffer, cancellationToken: Ct);
            Assert.All(buffer, b => Assert.Equal(0x11, b));
            await domain.UpdateDeviceAsync(Cdrom("hdc", images.Cd2), DeviceModifyFlags.Current, trays.Add, Ct);
            await Assert.ThrowsAnyAsync<Exception>(async () => await reader.ReadAsync(0, buffer, cancellationToken: Ct));
            await ReadAsync(socket, "hdc", "0x22");
        }

        await domain.UpdateDeviceAsync(Cdrom("hdd", null), DeviceModifyFlags.Live, trays.Add, Ct);
        Assert.DoesNotContain("hdd", await Peer.RunCheckedAsync("nbdinfo", "--list", $"nbd+unix://?socket={socket}"), StringComparison.Ordinal);

        // The same media again moves no tray, nor does the same file named in another format.
        await domain.UpdateDeviceAsync(Cdrom("hdc", images.Cd2), DeviceModifyFlags.Live, trays.Add, Ct);
        await domain.UpdateDeviceAsync(Cdrom("hdc", images.Cd2).Replace("type='raw'", "type='qcow2'", StringComparison.Ordinal), DeviceModifyFlags.Live, trays.Add, Ct);
        Assert.Equal(["ide0-1-1", "ide0-1-0", "ide0-1-1"], trays);
        Assert.Equal(images.Cd2, domain.Definition.DiskByTarget("hdc")!.SourcePath);
        Assert.Equal("raw", domain.Definition.DiskByTarget("hdc")!.DriverType);
        Assert.True(domain.Definition.DiskByTarget("hdd")!.IsEmpty);

        // The persistent definition is another matter: the next start has the old media.
        var persistent = DomainParser.Parse(domain.GetXml(DomainFormatFlags.Secure), cancellationToken: Ct);
        Assert.Equal(images.Cd1, persistent.DiskByTarget("hdc")!.SourcePath);
        await domain.UpdateDeviceAsync(Cdrom("hdd", images.Cd1), DeviceModifyFlags.Config, trays.Add, Ct);
        Assert.Equal(3, trays.Count);
        Assert.Null(domain.Running.DiskByTarget("hdd"));
        await domain.DestroyAsync(Ct);
        await domain.StartAsync(Ct);
        await ReadAsync(domain.Running.SocketPath, "hdc", "0x11");
        await ReadAsync(domain.Running.SocketPath, "hdd", "0x11");
    }

    [Fact]
    public async Task MediaThatCannotOpen_LeavesTheOldInTheDrive_AndRefusalsMoveNoTray()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, images) = await DefineAsync(test);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var trays = new List<string>();
        var before = DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure);

        async Task<string> RefusedAsync(string xml, DeviceModifyFlags flags = DeviceModifyFlags.Live)
            => (await Assert.ThrowsAsync<EngineException>(() => domain.UpdateDeviceAsync(xml, flags, trays.Add, Ct))).Message;

        Assert.Equal($"Cannot access storage file '{images.Missing}': No such file or directory", await RefusedAsync(Cdrom("hdc", images.Missing)));
        Assert.Equal("unsupported configuration: disk source can be changed only in removable drives", await RefusedAsync(Vda(images.Cd2)));
        Assert.Equal("Operation not supported: cannot modify field 'serial' of the disk", await RefusedAsync(Vda(images.Vda, "<serial>abc</serial>")));
        Assert.Equal("Operation not supported: cannot modify field 'readonly' of the disk", await RefusedAsync(Vda(images.Vda, "<readonly/>")));
        Assert.Equal("Operation not supported: cannot modify field 'bus' of the disk", await RefusedAsync(Cdrom("hdc", images.Cd2).Replace("bus='ide'", "bus='sata'", StringComparison.Ordinal)));
        Assert.Equal("internal error: disk 'hdb' not found", await RefusedAsync(Cdrom("hdb", images.Cd2)));
        Assert.Equal("internal error: Only 1 IDE controller is supported", await RefusedAsync(Cdrom("hdz", images.Cd2)));
        Assert.Equal("invalid argument: target hdb doesn't exist.", await RefusedAsync(Cdrom("hdb", images.Cd2), DeviceModifyFlags.Config));
        Assert.Equal("device not found: no device found at address '(<null>)' matching MAC address '52:54:00:aa:bb:cc' and alias '(<null>)'", await RefusedAsync("<interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='default'/></interface>"));
        Assert.Equal("unsupported flags (0x8) in function qemuDomainUpdateDeviceFlags", await RefusedAsync(Cdrom("hdc", images.Cd2), (DeviceModifyFlags)8));
        Assert.Empty(trays);

        // The drive of a running backup job keeps its media.
        var backup = await domain.BeginBackupAsync($"<domainbackup><disks><disk name='hdc' type='file'><target file='{test.Directory.File("hdc.bak")}'/><driver type='raw'/></disk></disks></domainbackup>", null, cancellationToken: Ct);
        try
        {
            Assert.Equal("Operation not supported: disk 'hdc' already in active block job", await RefusedAsync(Cdrom("hdc", images.Cd2)));
        }
        finally
        {
            domain.AbortBackup();
            await backup.Completion.ContinueWith(_ => { }, TaskScheduler.Default);
        }

        Assert.Empty(trays);
        Assert.Equal(before, DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure));

        // The domain's own disk is open for writing: QEMU's lock refuses it to the drive. The
        // tray opened and closed, and the old media is back in it.
        Assert.Equal("internal error: unable to execute QEMU command 'blockdev-add': Failed to get shared \"write\" lock", await RefusedAsync(Cdrom("hdc", images.Vda)));
        Assert.Equal(["ide0-1-0"], trays);
        await ReadAsync(socket, "hdc", "0x11");
        Assert.Equal(before, DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure));
    }

    /// <summary>The drive's media as a guest reads it: read-only, as the drive is.</summary>
    private static Task<string> ReadAsync(string socket, string target, string pattern)
        => Peer.RunCheckedAsync("qemu-io", "-r", "-f", "raw", "-c", $"read -P {pattern} 0 64k", Guest.Uri(socket, target));

    private sealed record Images(string Vda, string Cd1, string Cd2, string Missing);

    private static async Task<(Domain Domain, Images Images)> DefineAsync(TestHost test)
    {
        var images = new Images(test.Directory.File("vda.qcow2"), test.Directory.File("cd1.iso"), test.Directory.File("cd2.iso"), test.Directory.File("nosuch.iso"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", images.Vda, "8M");
        foreach (var (cd, pattern) in new[] { (images.Cd1, "0x11"), (images.Cd2, "0x22") })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", cd, "1M");
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", $"write -P {pattern} 0 1M", cd);
        }

        var domain = await test.Host.DefineAsync($"""
            <domain type='kvm'>
              <name>m</name>
              <memory unit='KiB'>1048576</memory>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <devices>
                {Vda(images.Vda)}
                {Cdrom("hdc", images.Cd1)}
                {Cdrom("hdd", null)}
              </devices>
            </domain>
            """, Ct);
        return (domain, images);
    }

    private static string Vda(string image, string extra = "")
        => $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='vda' bus='virtio'/>{extra}</disk>";

    private static string Cdrom(string target, string? image)
        => $"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>{(image is null ? "" : $"<source file='{image}'/>")}<target dev='{target}' bus='ide'/><readonly/></disk>";
}
