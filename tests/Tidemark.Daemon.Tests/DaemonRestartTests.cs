using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// A daemon's stop leaves its running domains to the next daemon on the state directory, as
/// libvirtd's leaves QEMU running: stock virsh sees them running with the ids they had, and a
/// guest with QEMU's <c>reconnect-delay</c> goes on writing. <c>--stop-domains</c> stops them.
/// </summary>
public sealed class DaemonRestartTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RunningDomains_OutliveTheDaemon_AsVirshAndTheGuestSeeThem()
    {
        await using var test = await TestDaemon.StartAsync();
        await test.StartDomainAsync("vm1", "write -P 0x11 0 64k");
        await test.StartDomainAsync("vm2", "write -P 0x22 0 64k");
        await Virsh.RunOkAsync(test, "destroy", "vm1");
        await Virsh.RunOkAsync(test, "start", "vm1");
        await Virsh.RunOkAsync(test, "suspend", "vm2");
        await Virsh.RunOkAsync(test, "suspend", "vm1");
        await Virsh.RunOkAsync(test, "resume", "vm1");
        await Virsh.RunOkAsync(test, "checkpoint-create-as", "vm1", "c1");
        var list = await Virsh.RunOkAsync(test, "list", "--all");
        Assert.Equal(" Id   Name   State\n----------------------\n 2    vm2    paused\n 3    vm1    running\n\n", list);

        await using var guest = QemuIoSession.OpenUnix(test.GuestSocket("vm1"), "vda", reconnectDelay: 60);
        await guest.RunAsync("write -P 0xaa 1M 64k", "wrote 65536/65536 bytes at offset 1048576");
        await test.Daemon.DisposeAsync();
        await guest.SendAsync("write -P 0xbb 2M 64k");

        var restarted = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot, StopDomains = true }, NullLoggerFactory.Instance);
        await restarted.StartAsync(Ct);
        try
        {
            Assert.Equal(list, await Virsh.RunOkAsync(test, "list", "--all"));
            await guest.WaitForReplyAsync("wrote 65536/65536 bytes at offset 2097152");
            await guest.RunAsync("read -P 0x11 0 64k", "read 65536/65536 bytes at offset 0");

            // The counts go on from the previous daemon's (one write there, one here), as QEMU's
            // go on across a restart of libvirtd.
            Assert.StartsWith("vda rd_req 1\nvda rd_bytes 65536\nvda wr_req 2\nvda wr_bytes 131072\n", await Virsh.RunOkAsync(test, "domblkstat", "vm1", "vda"), StringComparison.Ordinal);
            await guest.QuitAsync();
            Assert.Equal("paused (user)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm2", "--reason"));
            Assert.Equal("running (unpaused)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm1", "--reason"));
            Assert.Contains("size='131072'", await Virsh.RunOkAsync(test, "checkpoint-dumpxml", "vm1", "c1", "--size", "--no-domain"), StringComparison.Ordinal);
            Assert.Equal(" Id   Name   State\n----------------------\n 4    vm3    running\n\n", await StartAnotherAsync(test));
        }
        finally
        {
            await restarted.DisposeAsync();
        }

        // That daemon stopped them: the next finds them shut off, and not as crashed.
        var third = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot }, NullLoggerFactory.Instance);
        await third.StartAsync(Ct);
        try
        {
            Assert.Equal("\n", await Virsh.RunOkAsync(test, "list", "--name"));
            Assert.Equal("shut off (unknown)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm1", "--reason"));
        }
        finally
        {
            await third.DisposeAsync();
        }
    }

    [Fact]
    public async Task PullBackup_OutlivesTheDaemon_TheSameInstantServedByTheNext()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("vm", "write -P 0x61 0 2M");
        await test.GuestWriteAsync("vm", "vda", "write -P 0x62 8M 1M");
        var instant = await test.CaptureAsync(image, "instant.raw");
        var scratch = test.Directory.File("scratch.qcow2");
        var socket = test.Directory.File("pull.sock");
        var pull = test.Directory.File("pull.xml");
        await File.WriteAllTextAsync(pull, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks></domainbackup>", Ct);
        Assert.Equal("Backup started\n\n", await Virsh.RunOkAsync(test, "backup-begin", "vm", pull, "--checkpointxml", await CheckpointXmlAsync(test)));
        var document = await Virsh.RunOkAsync(test, "backup-dumpxml", "vm");
        await test.GuestWriteAsync("vm", "vda", "write -P 0x71 0 1M");
        Assert.Contains("Operation:        Backup", await Virsh.RunOkAsync(test, "domjobinfo", "vm"), StringComparison.Ordinal);

        await test.Daemon.DisposeAsync();
        Assert.True(File.Exists(scratch), "the daemon's stop removed the scratch");

        var restarted = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot }, NullLoggerFactory.Instance);
        await restarted.StartAsync(Ct);
        try
        {
            // The job is there, as libvirtd finds QEMU's after its restart: the same document,
            // the same export on the same socket, the same instant.
            var running = await Virsh.RunOkAsync(test, "domjobinfo", "vm");
            Assert.Contains("Job type:         Unbounded", running, StringComparison.Ordinal);
            Assert.Contains("Operation:        Backup", running, StringComparison.Ordinal);
            Assert.Equal(document, await Virsh.RunOkAsync(test, "backup-dumpxml", "vm"));
            await test.GuestWriteAsync("vm", "vda", "write -P 0x72 1M 8M");
            var copy = test.Directory.File("copy.raw");
            await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={socket}", copy);
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, instant]);
            Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);

            await Virsh.RunOkAsync(test, "domjobabort", "vm");
            if (restarted.Host!.LookupByName("vm").Backup is { } backup)
            {
                await backup.Completion.WaitAsync(TimeSpan.FromMinutes(2), Ct);
            }

            Assert.Contains("Job type:         Completed", await Virsh.RunOkAsync(test, "domjobinfo", "vm", "--completed"), StringComparison.Ordinal);
            Assert.False(File.Exists(scratch), "the scratch outlived the job");
            Assert.Contains("<name>b1</name>", await Virsh.RunOkAsync(test, "checkpoint-dumpxml", "vm", "b1", "--no-domain"), StringComparison.Ordinal);
        }
        finally
        {
            await restarted.DisposeAsync();
        }
    }

    private static async Task<string> CheckpointXmlAsync(TestDaemon test)
    {
        var path = test.Directory.File("b1.xml");
        await File.WriteAllTextAsync(path, "<domaincheckpoint><name>b1</name></domaincheckpoint>", Ct);
        return path;
    }

    private static async Task<string> StartAnotherAsync(TestDaemon test)
    {
        var image = await test.CreateImageAsync("vm3", "vda");
        var xml = test.Directory.File("vm3.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml("vm3", ("vda", image)), Ct);
        await Virsh.RunOkAsync(test, "create", xml);
        return await Virsh.RunOkAsync(test, "list", "--transient");
    }
}
