using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Disks attached to and detached from a running domain (the engine side of virsh
/// attach-disk/detach-disk): a new disk is served at once and tracked by the checkpoints taken
/// after it; an incremental backup names it until it has had a full; a detach ends its guests'
/// connections (the requests they were answered are in the image), stores its bitmaps and
/// leaves the other disks served; a disk in the running backup job stays; a live-only attach
/// is gone at the next start, a persistent one is not; and the running definition with a
/// hot-plugged disk survives a hand-over to the next host.
/// </summary>
public sealed class HotplugTests
{
    private const long Size = 8 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AttachedDisk_IsServedAndTracked_AndDetachStoresItsBitmapsAndEndsItsGuests()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("h", Size, new TestDisk("vda"));
        var vdc = test.Directory.File("vdc.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vdc, "8M");
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name></domaincheckpoint>", cancellationToken: Ct);

        await domain.AttachDeviceAsync(DiskXml(vdc, "vdc"), DeviceModifyFlags.Live, Ct);
        var socket = domain.Running!.SocketPath;
        await Guest.RunAsync(socket, "vdc", "write -P 0x61 0 64k");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k2</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.Contains("<disk name='vdc' checkpoint='bitmap' bitmap='k2'/>", await domain.Checkpoints.GetXmlAsync("k2", CheckpointFormatFlags.NoDomain, Ct), StringComparison.Ordinal);
        await Guest.RunAsync(socket, "vdc", "write -P 0x62 1M 64k");
        Assert.Contains("<disk name='vdc' checkpoint='bitmap' bitmap='k2' size='65536'/>", await domain.Checkpoints.GetXmlAsync("k2", CheckpointFormatFlags.NoDomain | CheckpointFormatFlags.Size, Ct), StringComparison.Ordinal);

        // From k1, older than the disk: refused for it, as libvirt refuses; a full of it works.
        var pull = test.Directory.File("pull.sock");
        var refused = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(PullXml(pull, "<disk name='vda'/><disk name='vdc'/>"), null, cancellationToken: Ct));
        Assert.Equal("checkpoint inconsistent: missing or broken bitmap 'k1' for disk 'vdc'", refused.Message);
        var backup = await domain.BeginBackupAsync(PullXml(pull, "<disk name='vda'/><disk name='vdc' backupmode='full'/>"), null, cancellationToken: Ct);

        // A disk the job copies stays; its end lets it go.
        var busy = await Assert.ThrowsAsync<EngineException>(() => domain.DetachDeviceAsync(DiskXml(vdc, "vdc"), DeviceModifyFlags.Live, Ct));
        Assert.Equal("Operation not supported: disk 'vdc' already in active block job", busy.Message);
        domain.AbortBackup();
        await backup.Completion;

        // A guest still connected: the detach ends its connection once its requests are answered.
        await using var guest = QemuIoSession.OpenUnix(socket, "vdc", reconnectDelay: 0);
        await guest.RunAsync("write -P 0x63 2M 64k", "wrote 65536/65536 bytes at offset 2097152");
        await domain.DetachDeviceAsync(DiskXml(vdc, "vdc"), DeviceModifyFlags.Live, Ct);
        Assert.Null(domain.Running.DiskByTarget("vdc"));
        Assert.DoesNotContain("vdc", (await Peer.RunCheckedAsync("nbdinfo", "--list", $"nbd+unix://?socket={socket}")), StringComparison.Ordinal);
        await Guest.RunAsync(socket, "vda", "write -P 0x64 0 64k");

        // The connection is gone: what the guest sends now reaches nothing.
        await guest.SendAsync("write -P 0x65 3M 64k");
        await Task.Delay(500, Ct);

        // Closed as a stop closes: bitmaps stored (not in use), every answered write in place.
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", vdc);
        Assert.Contains("\"name\": \"k2\"", info, StringComparison.Ordinal);
        Assert.DoesNotContain("in-use", info, StringComparison.Ordinal);
        await Peer.RunCheckedAsync("qemu-img", "check", vdc);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x61 0 64k", "-c", "read -P 0x62 1M 64k", "-c", "read -P 0x63 2M 64k", "-c", "read -P 0 3M 64k", vdc);

        // The detached disk's checkpoints go with no error: its bitmaps are simply not there to delete.
        await domain.Checkpoints.DeleteAsync("k2", cancellationToken: Ct);
    }

    [Fact]
    public async Task LiveOnly_GoneAtTheNextStart_Persistent_Kept_AndRefusalsChangeNothing()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("p", Size, new TestDisk("vda"));
        var vdc = test.Directory.File("vdc.qcow2");
        var vdd = test.Directory.File("vdd.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vdc, "8M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vdd, "8M");

        var stopped = await Assert.ThrowsAsync<EngineException>(() => domain.AttachDeviceAsync(DiskXml(vdc, "vdc"), DeviceModifyFlags.Live, Ct));
        Assert.Equal("Requested operation is not valid: domain is not running", stopped.Message);
        await domain.StartAsync(Ct);
        var inactiveXml = domain.GetXml(DomainFormatFlags.Secure);
        var unsupported = await Assert.ThrowsAsync<EngineException>(() => domain.AttachDeviceAsync("<interface type='network'><source network='default'/></interface>", DeviceModifyFlags.Live, Ct));
        Assert.Equal("Operation not supported: live attach of device 'interface' is not supported", unsupported.Message);
        Assert.Equal(inactiveXml, domain.GetXml(DomainFormatFlags.Secure));

        await domain.AttachDeviceAsync(DiskXml(vdc, "vdc"), DeviceModifyFlags.Live, Ct);
        await domain.AttachDeviceAsync(DiskXml(vdd, "vdd"), DeviceModifyFlags.Live | DeviceModifyFlags.Config, Ct);
        Assert.Equal(["vda", "vdc", "vdd"], domain.Running!.Disks.Select(d => d.Target));
        Assert.DoesNotContain("vdc", domain.GetXml(DomainFormatFlags.Secure), StringComparison.Ordinal);
        Assert.Contains("vdd", domain.GetXml(DomainFormatFlags.Secure), StringComparison.Ordinal);

        // The next host takes the running domain over with its hot-plugged disks.
        await test.Host.CloseKeepingDomainsAsync();
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("p");
        Assert.Equal(["vda", "vdc", "vdd"], domain.Running!.Disks.Select(d => d.Target));
        await Guest.RunAsync(domain.Running.SocketPath, "vdc", "write -P 0x71 0 64k");

        await domain.DestroyAsync(Ct);
        await domain.StartAsync(Ct);
        Assert.Equal(["vda", "vdd"], domain.Running!.Disks.Select(d => d.Target));
        await domain.DestroyAsync(Ct);
        await test.RestartAsync();
        Assert.Contains($"<source file='{vdd}'/>", test.Host.LookupByName("p").GetXml(DomainFormatFlags.Secure), StringComparison.Ordinal);
    }

    private static string DiskXml(string image, string target) =>
        $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='{target}' bus='virtio'/></disk>";

    private static string PullXml(string socket, string disks) =>
        $"<domainbackup mode='pull'><incremental>k1</incremental><server transport='unix' socket='{socket}'/><disks>{disks}</disks></domainbackup>";

    /// <summary>
    /// A running disk resized: qcow2 (the bitmaps grow with it, so a write past the old end is
    /// tracked) and raw, while a guest connection stays open and while the domain is paused (it
    /// stays paused); refused for a disk the running backup job copies.
    /// </summary>
    [Fact]
    public async Task Resize_GrowsTheImageAndItsBitmaps_HoldsTheGuestForTheMoment_RefusedDuringABackup()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("z", Size, new TestDisk("vda"), new TestDisk("vdb", Format: "raw"));
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>", cancellationToken: Ct);
        var socket = domain.Running!.SocketPath;
        await using var guest = QemuIoSession.OpenUnix(socket, "vda", reconnectDelay: 0);
        await guest.RunAsync("write -P 0x11 0 64k", "wrote 65536/65536 bytes at offset 0");

        await domain.ResizeDiskAsync("vda", (16 << 20) - 100, Ct);
        Assert.Equal(16L << 20, domain.Running.DiskByTarget("vda")!.LiveImage.VirtualSize);
        Assert.Equal(DomainState.Running, domain.State);
        await guest.RunAsync("write -P 0x12 64k 64k", "wrote 65536/65536 bytes at offset 65536");
        await Guest.RunAsync(socket, "vda", "write -P 0x13 15M 64k");
        Assert.Contains("size='196608'", await domain.Checkpoints.GetXmlAsync("k1", CheckpointFormatFlags.Size, Ct), StringComparison.Ordinal);

        await domain.SuspendAsync(Ct);
        await domain.ResizeDiskAsync(test.ImagePath("z", new TestDisk("vdb", Format: "raw")), 12 << 20, Ct);
        Assert.Equal(DomainState.Paused, domain.State);
        await domain.ResumeAsync(Ct);
        await Guest.RunAsync(socket, "vdb", "write -P 0x14 11M 64k");

        var backup = await domain.BeginBackupAsync(PullXml(test.Directory.File("p.sock"), "<disk name='vda'/>").Replace("<incremental>k1</incremental>", "", StringComparison.Ordinal), null, cancellationToken: Ct);
        var busy = await Assert.ThrowsAsync<EngineException>(() => domain.ResizeDiskAsync("vda", 32 << 20, Ct));
        Assert.Equal("internal error: unable to execute QEMU command 'block_resize': disk 'vda' is in use by block job: backup", busy.Message);
        domain.AbortBackup();
        await backup.Completion;
        var missing = await Assert.ThrowsAsync<EngineException>(() => domain.ResizeDiskAsync("vdz", 32 << 20, Ct));
        Assert.Equal("invalid argument: disk 'vdz' was not found in the domain config", missing.Message);

        await guest.QuitAsync();
        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("z", new TestDisk("vda")));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x11 0 64k", "-c", "read -P 0x12 64k 64k", "-c", "read -P 0x13 15M 64k", test.ImagePath("z", new TestDisk("vda")));
        Assert.Contains("\"virtual-size\": 16777216", await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", test.ImagePath("z", new TestDisk("vda"))), StringComparison.Ordinal);
        Assert.Equal(12L << 20, new FileInfo(test.ImagePath("z", new TestDisk("vdb", Format: "raw"))).Length);
    }
}
