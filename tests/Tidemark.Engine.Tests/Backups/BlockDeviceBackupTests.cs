using System.Text.Json;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Block devices as disks and as backup stores (spec §6.7 step 11, §6.9, §6.10), each a loop
/// device full of a non-zero pattern, as logical volumes are: a qcow2 disk on a device serves
/// the guest and takes checkpoints; a push into a raw device writes zeroes where the disk reads
/// zeroes (the device's old bytes must not show); a pull's scratch formatted on a device is left
/// there at the end. qemu-img and libnbd's tools judge.
/// </summary>
public sealed class BlockDeviceBackupTests
{
    private const long Size = 16 << 20;
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Qcow2DiskOnADevice_PushIntoARawDevice_ThenIncrementalPullWithAScratchDevice()
    {
        await using var test = await TestHost.CreateAsync();
        await using var disk = await LoopDevice.AttachAsync(test.Directory.Path, 2 * Size);
        await using var target = await LoopDevice.AttachAsync(test.Directory.Path, Size);
        await using var scratch = await LoopDevice.AttachAsync(test.Directory.Path, 2 * Size);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", disk.Path, "16M");
        var domain = await test.Host.DefineAsync(DomainXml(disk.Path), Ct);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 1M", "write -P 0x62 4M 4k");

        var instant1 = await DomainBackupTests.CaptureAsync(test, disk.Path, "i1.raw");
        var push = $"""
            <domainbackup mode='push'>
              <disks><disk name='vda' type='block'><target dev='{target.Path}'/><driver type='raw'/></disk></disks>
            </domainbackup>
            """;
        var backup = await domain.BeginBackupAsync(push, "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x71 0 2M", "write -P 0x72 12M 1M");
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        await Documents.AssertSameContentAsync(target.Path, "raw", instant1);

        // Incremental since c1 through a scratch formatted on a device, the guest writing on.
        var instant2 = await DomainBackupTests.CaptureAsync(test, disk.Path, "i2.raw");
        var export = test.Directory.File("pull.sock");
        var pull = $"""
            <domainbackup mode='pull'><incremental>c1</incremental>
              <server transport='unix' socket='{export}'/>
              <disks><disk name='vda' type='block'><scratch dev='{scratch.Path}'/></disk></disks>
            </domainbackup>
            """;
        backup = await domain.BeginBackupAsync(pull, null, cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x81 0 4M", "write -P 0x82 12M 64k");
        var uri = $"nbd+unix:///vda?socket={export}";
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", uri, copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant2);
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:backup-vda", "--json", uri));
        var dirty = map.RootElement.EnumerateArray().Where(e => e.GetProperty("type").GetInt32() == 1).Sum(e => e.GetProperty("length").GetInt64());
        Assert.Equal((2L << 20) + (1L << 20), dirty);

        domain.AbortBackup();
        info = await backup.Completion.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);

        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", disk.Path);

        // The scratch device is left as it is: the qcow2 formatted on it over the disk, holding the copies.
        var scratchInfo = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", scratch.Path));
        Assert.Equal("qcow2", scratchInfo.RootElement.GetProperty("format").GetString());
        Assert.Equal(disk.Path, scratchInfo.RootElement.GetProperty("backing-filename").GetString());
        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", scratch.Path);
        Assert.Contains("c1", await ImageBitmaps.NamesAsync(disk.Path));
    }

    /// <summary>type='block' naming a regular file: QEMU's host_device driver refuses it, and the file is left alone.</summary>
    [Fact]
    public async Task BlockStoreOrDisk_ThatIsARegularFile_IsRefused()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("f", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var file = test.Directory.File("not-a-device");
        await File.WriteAllBytesAsync(file, [1, 2, 3], Ct);
        var push = $"""
            <domainbackup mode='push'>
              <disks><disk name='vda' type='block'><target dev='{file}'/><driver type='qcow2'/></disk></disks>
            </domainbackup>
            """;
        var refused = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(push, null, cancellationToken: Ct));
        Assert.Equal($"internal error: unable to execute QEMU command 'blockdev-add': 'host_device' driver requires '{file}' to be either a character or block device", refused.Message);
        Assert.Equal([1, 2, 3], await File.ReadAllBytesAsync(file, Ct));
        var missing = test.Directory.File("no-such-device");
        refused = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(push.Replace(file, missing, StringComparison.Ordinal), null, cancellationToken: Ct));
        Assert.Equal($"internal error: unable to execute QEMU command 'blockdev-add': Could not open '{missing}': No such file or directory", refused.Message);
        Assert.False(File.Exists(missing));
        Assert.Null(domain.Backup);
        await domain.DestroyAsync(Ct);

        var blockDisk = await test.Host.DefineAsync(DomainXml(file).Replace("<name>blk</name>", "<name>blk2</name>", StringComparison.Ordinal).Replace(TestHost.Uuid, "6695eb01-f6a4-8304-79aa-97f2502e1940", StringComparison.Ordinal), Ct);
        var error = await Assert.ThrowsAsync<EngineException>(() => blockDisk.StartAsync(Ct));
        Assert.Contains($"'host_device' driver requires '{file}' to be either a character or block device", error.Message, StringComparison.Ordinal);
    }

    private static string DomainXml(string device) => $"""
        <domain type='kvm'>
          <name>blk</name>
          <uuid>{TestHost.Uuid}</uuid>
          <memory unit='KiB'>1048576</memory>
          <devices>
            <disk type='block' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source dev='{device}'/>
              <target dev='vda' bus='virtio'/>
            </disk>
          </devices>
        </domain>
        """;
}
