using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>
/// virtnbdbackup 1.9.15 runs its whole call sequence through the server (lib version,
/// lookup, guest info, checkpoints, XML, block job info, freeze, BACKUP_BEGIN in pull mode,
/// checkpoint save, ABORT_JOB), reading the data from a qemu-nbd export the protocol fixture
/// starts; virtnbdrestore (also through the server) rebuilds a disk identical to the source.
/// </summary>
public sealed class VirtnbdbackupTests
{
    [Fact]
    public async Task FullBackupAndRestore_ThroughTheServer()
    {
        Peer.Require("virtnbdbackup");
        await using var server = await TestRemoteServer.StartAsync();
        using var dir = new TempDirectory("remote-vnb");
        var disk = dir.File("vda.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", disk, "64M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x33 10M 512k", disk);
        server.Hypervisor.AddDomain("vm1", running: true).DiskPath = disk;

        // The plain qemu:/// form: virtnbdbackup 1.9.15 treats qemu+unix as remote (libvirt-rpc.md).
        var uri = $"qemu:///system?socket={server.SocketPath}";
        var backup = await Peer.RunAsync("virtnbdbackup", ["-U", uri, "-d", "vm1", "-l", "full", "-o", dir.File("out"), "-n", "-f", dir.File("nbd.sock")], timeout: TimeSpan.FromMinutes(2));
        Assert.True(backup.ExitCode == 0, backup.Stderr);
        Assert.Contains("AbortJob vm1", server.Hypervisor.Calls);
        Assert.Contains(server.Hypervisor.Calls, c => c.StartsWith("BeginBackup vm1 <domainbackup mode=\"pull\">", StringComparison.Ordinal) && c.Contains("<name>virtnbdbackup.0</name>", StringComparison.Ordinal));
        Assert.Equal(["virtnbdbackup.0"], server.Hypervisor.Domain("vm1").Checkpoints.Select(c => c.Name));
        Assert.True(File.Exists(dir.File("out/checkpoints/virtnbdbackup.0.xml")));

        var restore = await VirtNbdRestore.RunAsync(["-U", uri, "-i", dir.File("out"), "-o", dir.File("restored"), "-n"], dir.File("restored"), TimeSpan.FromMinutes(2));
        Assert.True(restore.ExitCode == 0, restore.Stderr);
        var compare = await Peer.RunAsync("qemu-img", ["compare", disk, dir.File("restored/vda.qcow2")]);
        Assert.Equal((0, "Images are identical.\n"), (compare.ExitCode, compare.Stdout));
    }
}
