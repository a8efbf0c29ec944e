using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// Stock virsh 9.0 driving the daemon through a domain's life: define, start, checkpoints,
/// a push backup, job statistics, destroy, undefine; each output as virsh prints it against
/// libvirt. qemu-io writes through the domain's NBD export in between; qemu-img judges the backup.
/// </summary>
public sealed class VirshTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task DomainLifeCycle_CheckpointsAndPushBackup_AsVirshPrintsThem()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("vm1", "vda");
        var xmlFile = test.Directory.File("vm1.xml");
        await File.WriteAllTextAsync(xmlFile, TestDaemon.DomainXml("vm1", ("vda", image)), Ct);

        Assert.Equal($"Domain 'vm1' defined from {xmlFile}\n\n", await Virsh.RunOkAsync(test, "define", xmlFile));
        Assert.Equal(" Id   Name   State\n-----------------------\n -    vm1    shut off\n\n", await Virsh.RunOkAsync(test, "list", "--all"));
        Assert.Equal("Domain 'vm1' started\n\n", await Virsh.RunOkAsync(test, "start", "vm1"));
        Assert.Equal("running\n\n", await Virsh.RunOkAsync(test, "domstate", "vm1"));
        Assert.Equal(" Id   Name   State\n----------------------\n 1    vm1    running\n\n", await Virsh.RunOkAsync(test, "list"));

        // No guest agent here: libvirt's answer for a domain without an agent channel, which virtnbdbackup tolerates.
        var freeze = await Virsh.RunAsync(test, "domfsfreeze", "vm1");
        Assert.Equal(1, freeze.ExitCode);
        Assert.EndsWith("error: argument unsupported: QEMU guest agent is not configured\n", freeze.Stderr, StringComparison.Ordinal);

        var xml = await Virsh.RunOkAsync(test, "dumpxml", "vm1");
        Assert.Contains($"<tidemark:disk target='vda' uri='nbd+unix:///vda?socket={test.GuestSocket("vm1")}'/>", xml, StringComparison.Ordinal);
        Assert.Contains($"<source file='{image}' index='1'/>\n      <backingStore/>\n", xml, StringComparison.Ordinal);
        Assert.DoesNotContain("tidemark:", await Virsh.RunOkAsync(test, "dumpxml", "vm1", "--inactive"), StringComparison.Ordinal);
        Assert.Contains($" vda      {image}\n", await Virsh.RunOkAsync(test, "domblklist", "vm1"), StringComparison.Ordinal);

        await test.GuestWriteAsync("vm1", "vda", "write -P 0x61 0 1M");
        Assert.Equal("Domain checkpoint c1 created\n", await Virsh.RunOkAsync(test, "checkpoint-create-as", "vm1", "c1"));
        await test.GuestWriteAsync("vm1", "vda", "write -P 0x62 2M 128k");
        Assert.Equal("Domain checkpoint c2 created\n", await Virsh.RunOkAsync(test, "checkpoint-create-as", "vm1", "c2"));
        await test.GuestWriteAsync("vm1", "vda", "write -P 0x63 4M 64k");

        Assert.Equal("c1\nc2\n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "vm1", "--name"));
        Assert.Equal("c2\n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "vm1", "--name", "--leaves"));
        Assert.Equal("c1\n  |\n  +- c2\n    \n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "vm1", "--tree"));
        var table = await Virsh.RunOkAsync(test, "checkpoint-list", "vm1");
        Assert.StartsWith(" Name   Creation Time\n---", table, StringComparison.Ordinal);
        Assert.Contains("\n c2     ", table, StringComparison.Ordinal);
        Assert.Equal("c1\n", await Virsh.RunOkAsync(test, "checkpoint-parent", "vm1", "c2"));

        // --size: bytes written since each checkpoint (64 KiB granules).
        var c1 = await Virsh.RunOkAsync(test, "checkpoint-dumpxml", "vm1", "c1", "--size", "--no-domain");
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='196608'/>", c1, StringComparison.Ordinal);
        Assert.DoesNotContain("<domain type", c1, StringComparison.Ordinal);
        Assert.Contains("size='65536'", await Virsh.RunOkAsync(test, "checkpoint-dumpxml", "vm1", "c2", "--size"), StringComparison.Ordinal);
        Assert.Contains("<domain type='kvm'>", await Virsh.RunOkAsync(test, "checkpoint-dumpxml", "vm1", "c2"), StringComparison.Ordinal);

        // A push backup with a checkpoint at its instant; the guest is quiet while it is taken.
        var instant = await test.CaptureAsync(image, "instant.raw");
        var target = test.Directory.File("full.qcow2");
        var backupXml = test.Directory.File("backup.xml");
        await File.WriteAllTextAsync(backupXml, $"<domainbackup><disks><disk name='vda' type='file'><target file='{target}'/><driver type='qcow2'/></disk></disks></domainbackup>", Ct);
        var checkpointXml = test.Directory.File("c3.xml");
        await File.WriteAllTextAsync(checkpointXml, "<domaincheckpoint><name>c3</name></domaincheckpoint>", Ct);
        Assert.Equal("Backup started", (await Virsh.RunOkAsync(test, "backup-begin", "vm1", backupXml, checkpointXml)).TrimEnd('\n'));
        await test.GuestWriteAsync("vm1", "vda", "write -P 0x64 0 2M");
        await test.WaitForJobEndAsync("vm1");

        // virsh pads the job type to a column; the padding is virsh's, not the daemon's.
        var completed = string.Join('\n', (await Virsh.RunOkAsync(test, "domjobinfo", "vm1", "--completed")).Split('\n').Select(l => l.TrimEnd()));
        Assert.StartsWith("Job type:         Completed\nOperation:        Backup\n", completed, StringComparison.Ordinal);

        // A full push counts the whole 16 MiB disk, as QEMU's backup job does, holes included.
        Assert.Contains("File processed:   16.000 MiB\nFile remaining:   0.000 B\nFile total:       16.000 MiB\n", completed, StringComparison.Ordinal);

        // Handed out once.
        Assert.StartsWith("Job type:         None", await Virsh.RunOkAsync(test, "domjobinfo", "vm1", "--completed"), StringComparison.Ordinal);
        await Peer.RunCheckedAsync("qemu-img", "check", target);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", target, instant]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);

        var noJob = await Virsh.RunAsync(test, "backup-dumpxml", "vm1");
        Assert.Equal("error: Domain backup job id not found: no domain backup job present\n", noJob.Stderr);
        var noParent = await Virsh.RunAsync(test, "checkpoint-parent", "vm1", "c1");
        Assert.Equal(1, noParent.ExitCode);
        Assert.Equal("Domain checkpoint c1 deleted\n\n", await Virsh.RunOkAsync(test, "checkpoint-delete", "vm1", "c1"));
        Assert.Equal("c2\nc3\n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "vm1", "--name"));
        var missing = await Virsh.RunAsync(test, "checkpoint-dumpxml", "vm1", "c1");
        Assert.Equal("error: Domain checkpoint not found: no domain checkpoint with matching name 'c1'\n", missing.Stderr);

        Assert.Equal("Domain 'vm1' destroyed\n\n", await Virsh.RunOkAsync(test, "destroy", "vm1"));
        Assert.Equal("shut off\n\n", await Virsh.RunOkAsync(test, "domstate", "vm1"));
        var refused = await Virsh.RunAsync(test, "undefine", "vm1");
        Assert.Equal("error: Failed to undefine domain 'vm1'\nerror: Requested operation is not valid: cannot delete inactive domain with 2 checkpoints\n", refused.Stderr);
        Assert.Equal("Domain 'vm1' has been undefined\n\n", await Virsh.RunOkAsync(test, "undefine", "vm1", "--checkpoints-metadata"));
        Assert.Equal(" Id   Name   State\n--------------------\n\n", await Virsh.RunOkAsync(test, "list", "--all"));
        var gone = await Virsh.RunAsync(test, "domstate", "vm1");
        Assert.Equal("error: failed to get domain 'vm1'\n", gone.Stderr);

        // The checkpoint bitmaps stay in the image, stored cleanly.
        await Peer.RunCheckedAsync("qemu-img", "check", image);
    }

    [Fact]
    public async Task Autostart_IsPersisted_AndStartsTheDomainWithTheDaemon()
    {
        var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("a1", "vda");
        var xmlFile = test.Directory.File("a1.xml");
        await File.WriteAllTextAsync(xmlFile, TestDaemon.DomainXml("a1", ("vda", image)), Ct);
        await Virsh.RunOkAsync(test, "define", xmlFile);
        Assert.Equal("Domain 'a1' marked as autostarted\n\n", await Virsh.RunOkAsync(test, "autostart", "a1"));
        Assert.Equal("a1\n\n", await Virsh.RunOkAsync(test, "list", "--all", "--autostart", "--name"));

        // A second daemon on the same state directory is refused while the first runs.
        var second = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot, SocketPath = test.Directory.File("sock2") }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        var refused = await Assert.ThrowsAsync<DaemonException>(() => second.StartAsync(Ct));
        Assert.Equal(DaemonErrorReason.StateDirectoryInUse, refused.Reason);
        Assert.Contains($"is using the state directory '{test.StateRoot}'", refused.Message, StringComparison.Ordinal);

        await test.Daemon.DisposeAsync();
        var restarted = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        await restarted.StartAsync(Ct);
        try
        {
            Assert.True(restarted.Host!.LookupByName("a1").IsActive);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(test.StateRoot, "tidemark-sock")));
            }
        }
        finally
        {
            await restarted.DisposeAsync();
            test.Directory.Dispose();
        }
    }
}
