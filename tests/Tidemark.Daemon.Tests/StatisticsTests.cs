using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// Block statistics through stock virsh and libvirt-python: each disk's requests counted as
/// QEMU counts a device's (reads, writes with write-zeroes among them, flushes, their bytes and
/// times), the sum over the disks, the stats records of <c>virsh domstats</c>, and the disk
/// error a write into a full file system leaves, as <c>virsh domblkerror</c> shows it.
/// </summary>
public sealed class StatisticsTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task Counters_CountWhatTheGuestDid_PerDiskAndInTotal()
    {
        await using var test = await TestDaemon.StartAsync();
        var vda = await test.CreateImageAsync("st", "vda");
        var vdb = await test.CreateImageAsync("st", "vdb");
        var xml = test.Directory.File("st.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml("st", ("vda", vda), ("vdb", vdb)), Ct);
        await Virsh.RunOkAsync(test, "define", xml);
        await Virsh.RunOkAsync(test, "start", "st");

        Assert.Equal(Stat("vda", 0, 0, 0, 0, 0), Counts(await Virsh.RunOkAsync(test, "domblkstat", "st", "vda")));

        // qemu-io: two writes (one of zeroes), one read, its flush, and the flush of its close.
        await test.GuestWriteAsync("st", "vda", "write -P 0x61 0 64k", "write -z 1M 1M", "read 0 4k");
        await test.GuestWriteAsync("st", "vdb", "write -P 0x62 0 512", "read 0 8k", "read 8k 8k");

        var first = await Virsh.RunOkAsync(test, "domblkstat", "st", "vda");
        Assert.Equal(Stat("vda", 1, 4096, 2, 65536 + 1048576, 2), Counts(first));
        Assert.Matches(@"vda rd_total_times [1-9]\d*\nvda wr_total_times [1-9]\d*\nvda flush_total_times [1-9]\d*\n", first);
        Assert.Equal(Stat(vdb, 2, 16384, 1, 512, 2), Counts(await Virsh.RunOkAsync(test, "domblkstat", "st", vdb)));
        Assert.Equal(Stat("", 3, 20480, 3, 65536 + 1048576 + 512, 4), Counts(await Virsh.RunOkAsync(test, "domblkstat", "st")));

        var stats = await Virsh.RunOkAsync(test, "domstats", "st", "--block", "--state");
        Assert.StartsWith("Domain: 'st'\n  state.state=1\n  state.reason=1\n  block.count=2\n  block.0.name=vda\n  block.0.path=" + vda + "\n  block.0.backingIndex=2\n  block.0.rd.reqs=1\n  block.0.rd.bytes=4096\n", stats, StringComparison.Ordinal);
        Assert.Contains("  block.1.name=vdb\n  block.1.path=" + vdb + "\n  block.1.backingIndex=1\n  block.1.rd.reqs=2\n  block.1.rd.bytes=16384\n", stats, StringComparison.Ordinal);
        Assert.Contains("  block.1.wr.reqs=1\n  block.1.wr.bytes=512\n", stats, StringComparison.Ordinal);
        Assert.Contains("  block.1.capacity=16777216\n", stats, StringComparison.Ordinal);

        // libvirt-python: the typed parameters in qemuDomainBlockStatsFlags' order, the old call's
        // five numbers (errs -1: QEMU counts none), and getAllDomainStats.
        var python = await Peer.RunAsync("/usr/bin/python3", ["-c", """
            import sys, libvirt
            c = libvirt.open(sys.argv[1]); d = c.lookupByName('st')
            print(list(d.blockStatsFlags('vda').items()))
            print(d.blockStats('vdb'))
            print(d.diskErrors())
            [(dom, s)] = c.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_BLOCK)
            print(dom.name(), s['block.count'], s['block.0.wr.bytes'], s['block.1.fl.reqs'])
            """, test.Uri]);
        python.EnsureSuccess();
        var lines = python.Stdout.Split('\n');
        Assert.StartsWith("[('wr_bytes', 1114112), ('wr_operations', 2), ('rd_bytes', 4096), ('rd_operations', 1), ('flush_operations', 2), ('wr_total_times', ", lines[0], StringComparison.Ordinal);
        Assert.Equal("(2, 16384, 1, 512, -1)", lines[1]);
        Assert.Equal("{}", lines[2]);
        Assert.Equal("st 2 1114112 2", lines[3]);

        // Groups without a guest machine (vCPUs, balloon, network …) are left out, or refused
        // when demanded, with libvirt's words for a group its QEMU lacks.
        Assert.Equal("Domain: 'st'\n  state.state=1\n  state.reason=1\n\n", await Virsh.RunOkAsync(test, "domstats", "st", "--state", "--vcpu", "--balloon"));
        var enforced = await Virsh.RunAsync(test, "domstats", "st", "--vcpu", "--enforce");
        Assert.Equal("error: argument unsupported: Stats types bits 0x8 are not supported by this daemon or QEMU\n", enforced.Stderr);

        // Counters start again with the domain, as QEMU's do with its process.
        await Virsh.RunOkAsync(test, "destroy", "st");
        var inactive = await Virsh.RunAsync(test, "domblkstat", "st", "vda");
        Assert.Equal((1, "error: Requested operation is not valid: domain is not running\n"), (inactive.ExitCode, inactive.Stderr));
        var expected = "Domain: 'st'\n  state.state=5\n  state.reason=2\n  block.count=2\n  block.0.name=vda\n  block.0.path=" + vda + "\n  block.0.allocation=";
        Assert.StartsWith(expected, await Virsh.RunOkAsync(test, "domstats", "st", "--block", "--state"), StringComparison.Ordinal);
        await Virsh.RunOkAsync(test, "start", "st");
        Assert.Equal(Stat("vda", 0, 0, 0, 0, 0), Counts(await Virsh.RunOkAsync(test, "domblkstat", "st", "vda")));

        var missing = await Virsh.RunAsync(test, "domblkstat", "st", "vdz");
        Assert.Equal("error: invalid argument: invalid path: vdz\n", missing.Stderr);
    }

    [Fact]
    public async Task AWriteThatFindsNoSpace_PausesTheDomain_AndIsTheDisksError()
    {
        await using var test = await TestDaemon.StartAsync();
        var (mount, image) = await StartOnSmallFileSystemAsync(test, "full", null);
        await using var unmount = mount;
        Assert.Equal("No errors found\n\n", await Virsh.RunOkAsync(test, "domblkerror", "full"));

        // The guest writes more than the file system holds: with no error_policy (QEMU's
        // werror=enospc) the domain pauses with the write held, which the guest never sees fail.
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 8M", $"nbd+unix:///vda?socket={test.GuestSocket("full")}"]);
        for (var attempt = 0; await Virsh.RunOkAsync(test, "domstate", "full", "--reason") != "paused (I/O error)\n\n"; attempt++)
        {
            Assert.True(attempt < 300, "the domain did not pause for the write that found no space");
            await Task.Delay(100, Ct);
        }

        Assert.False(write.IsCompleted);
        Assert.Equal("vda: no space\n\n", await Virsh.RunOkAsync(test, "domblkerror", "full"));
        Assert.Equal("{'vda': 2}\n", (await Peer.RunCheckedAsync("/usr/bin/python3", "-c", "import sys, libvirt; print(libvirt.open(sys.argv[1]).lookupByName('full').diskErrors())", test.Uri)));

        // Destroyed with the write held: the guest loses its connection, not its data to a lie.
        await Virsh.RunOkAsync(test, "destroy", "full");
        Assert.DoesNotContain("wrote 8388608/8388608", (await write).Stdout, StringComparison.Ordinal);
        var stopped = await Virsh.RunAsync(test, "domblkerror", "full");
        Assert.EndsWith("error: Requested operation is not valid: domain is not running\n", stopped.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AWriteThatFindsNoSpace_UnderErrorPolicyReport_FailsForTheGuest_AndTheDomainRunsOn()
    {
        await using var test = await TestDaemon.StartAsync();
        var (mount, image) = await StartOnSmallFileSystemAsync(test, "report", "report");
        await using var unmount = mount;

        var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 8M", $"nbd+unix:///vda?socket={test.GuestSocket("report")}"]);
        Assert.Contains("No space left on device", write.Stdout + write.Stderr, StringComparison.Ordinal);

        // QEMU sets a device's io-status only when its error paused the VM.
        Assert.Equal("running (booted)\n\n", await Virsh.RunOkAsync(test, "domstate", "report", "--reason"));
        Assert.Equal("No errors found\n\n", await Virsh.RunOkAsync(test, "domblkerror", "report"));

        // No cluster the failed write took is lost, once the metadata has room to be written back.
        await Peer.RunCheckedAsync("mount", "-o", "remount,size=64m", mount.Path);
        await Virsh.RunOkAsync(test, "destroy", "report");
        Assert.Contains("No errors were found on the image.", await Peer.RunCheckedAsync("qemu-img", "check", image), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AWriteThatFindsNoSpace_UnderErrorPolicyIgnore_IsAnsweredAsDone_AndAnnounced()
    {
        await using var test = await TestDaemon.StartAsync();
        var (mount, image) = await StartOnSmallFileSystemAsync(test, "ignore", "ignore");
        await using var unmount = mount;

        await using var events = FollowedProcess.Start("virsh", ["-c", test.Uri, "event", "ignore", "--event", "io-error-reason", "--loop"]);
        await Task.Delay(1000, Ct);
        var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 8M", $"nbd+unix:///vda?socket={test.GuestSocket("ignore")}"]);
        Assert.Contains("wrote 8388608/8388608 bytes at offset 0", write.Stdout, StringComparison.Ordinal);

        // QEMU's werror=ignore: the guest is told the write succeeded, the event says so (action
        // "none"), and the domain neither pauses nor keeps an error.
        Assert.Equal($" {image} (virtio-disk0) none due to enospc", await events.WaitForLineAsync("event 'io-error-reason' for domain 'ignore':"));
        Assert.Equal("running (booted)\n\n", await Virsh.RunOkAsync(test, "domstate", "ignore", "--reason"));
        Assert.Equal("No errors found\n\n", await Virsh.RunOkAsync(test, "domblkerror", "ignore"));
        await Virsh.RunOkAsync(test, "destroy", "ignore");
    }

    /// <summary>
    /// Defines and starts <paramref name="name"/> with its disk on a 2 MiB file system, which an
    /// 8 MiB guest write fills; its driver has <paramref name="errorPolicy"/>, if given.
    /// </summary>
    private static async Task<(TmpfsMount Mount, string Image)> StartOnSmallFileSystemAsync(TestDaemon test, string name, string? errorPolicy)
    {
        var mount = await TmpfsMount.SmallAsync(test.Directory.File("small"), 2 << 20);
        try
        {
            var image = Path.Combine(mount.Path, "vda.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
            var xml = test.Directory.File(name + ".xml");
            var domain = TestDaemon.DomainXml(name, ("vda", image));
            if (errorPolicy is not null)
            {
                domain = domain.Replace("<driver name='qemu' type='qcow2'/>", $"<driver name='qemu' type='qcow2' error_policy='{errorPolicy}'/>", StringComparison.Ordinal);
            }

            await File.WriteAllTextAsync(xml, domain, Ct);
            await Virsh.RunOkAsync(test, "define", xml);
            await Virsh.RunOkAsync(test, "start", name);
            return (mount, image);
        }
        catch
        {
            await mount.DisposeAsync();
            throw;
        }
    }

    private static string Stat(string disk, long readOps, long readBytes, long writeOps, long writeBytes, long flushOps) =>
        $"{disk} rd_req {readOps}\n{disk} rd_bytes {readBytes}\n{disk} wr_req {writeOps}\n{disk} wr_bytes {writeBytes}\n{disk} flush_operations {flushOps}\n";

    // The counts, without the times (which only have to be there).
    private static string Counts(string domblkstat) => string.Concat(domblkstat.Split('\n').Where(l => l.Length > 0 && !l.Contains("_times", StringComparison.Ordinal)).Select(l => l + "\n"));
}
