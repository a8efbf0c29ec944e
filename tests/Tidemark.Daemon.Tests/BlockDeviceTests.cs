using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// Stock virsh driving a domain whose disk and backup stores are block devices (loop devices
/// full of a pattern, as logical volumes): domblkinfo reports the device's size as the disk's
/// physical size, as libvirt does; a push into a raw device and an incremental pull through a
/// scratch formatted on a device are each the disk at their instant (qemu-img compare, nbdcopy).
/// virtnbdbackup 1.9.15 skips type='block' disks itself ("Skipping direct attached block
/// device"), so virsh and libnbd's tools are the peers here.
/// </summary>
public sealed class BlockDeviceTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task BlockDisk_PushIntoADevice_ThenIncrementalPullThroughADeviceScratch()
    {
        await using var test = await TestDaemon.StartAsync();
        await using var disk = await LoopDevice.AttachAsync(test.Directory.Path, 48L << 20);
        await using var target = await LoopDevice.AttachAsync(test.Directory.Path, 32L << 20);
        await using var scratch = await LoopDevice.AttachAsync(test.Directory.Path, 48L << 20);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", disk.Path, "32M");
        await Virsh.RunOkAsync(test, "define", await WriteAsync(test, "blk.xml", DomainDocuments.WithQcow2Disks("blk", [("vda", disk.Path)], blockDevices: true)));
        await Virsh.RunOkAsync(test, "start", "blk");
        Assert.Contains($"<source dev='{disk.Path}'", await Virsh.RunOkAsync(test, "dumpxml", "blk"), StringComparison.Ordinal);
        var sizes = (await Virsh.RunOkAsync(test, "domblkinfo", "blk", "vda")).Split('\n')
            .Select(l => l.Split(':', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1].Trim(), StringComparer.Ordinal);
        Assert.Equal("33554432", sizes["Capacity"]);
        Assert.Equal("50331648", sizes["Physical"]);

        await test.GuestWriteAsync("blk", "vda", "write -P 0x61 0 2M", "write -P 0x62 8M 1M");
        var instant1 = await test.CaptureAsync(disk.Path, "i1.raw");
        var push = await WriteAsync(test, "push.xml", $"""
            <domainbackup mode='push'>
              <disks><disk name='vda' type='block'><target dev='{target.Path}'/><driver type='raw'/></disk></disks>
            </domainbackup>
            """);
        var checkpoint = await WriteAsync(test, "c1.xml", "<domaincheckpoint><name>c1</name></domaincheckpoint>");
        Assert.Equal("Backup started", (await Virsh.RunOkAsync(test, "backup-begin", "blk", push, checkpoint)).TrimEnd('\n'));
        await test.GuestWriteAsync("blk", "vda", "write -P 0x71 0 4M");
        await test.WaitForJobEndAsync("blk");
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", target.Path, instant1])).ExitCode);

        await test.GuestWriteAsync("blk", "vda", "write -P 0x72 20M 512k");
        var instant2 = await test.CaptureAsync(disk.Path, "i2.raw");
        var socket = test.Directory.File("pull.sock");
        var pull = await WriteAsync(test, "pull.xml", $"""
            <domainbackup mode='pull'><incremental>c1</incremental>
              <server transport='unix' socket='{socket}'/>
              <disks><disk name='vda' type='block'><scratch dev='{scratch.Path}'/></disk></disks>
            </domainbackup>
            """);
        Assert.Equal("Backup started", (await Virsh.RunOkAsync(test, "backup-begin", "blk", pull)).TrimEnd('\n'));
        await test.GuestWriteAsync("blk", "vda", "write -P 0x81 0 8M", "write -P 0x82 20M 64k");
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={socket}", copy);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, instant2])).ExitCode);
        await Virsh.RunOkAsync(test, "domjobabort", "blk");
        await test.WaitForJobEndAsync("blk");

        await Virsh.RunOkAsync(test, "destroy", "blk");
        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", disk.Path);
        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", scratch.Path);
    }

    private static async Task<string> WriteAsync(TestDaemon test, string name, string text)
    {
        var path = test.Directory.File(name);
        await File.WriteAllTextAsync(path, text, Ct);
        return path;
    }
}
