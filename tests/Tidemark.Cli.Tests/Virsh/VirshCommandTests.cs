using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Virsh;

/// <summary>
/// tidemark's virsh commands against stock virsh 9.0: the same command lines, each on its own
/// daemon in the same state, print the same text and exit alike — domain life cycle and
/// queries, every checkpoint command and its options, a push backup and its job statistics,
/// events, and the error lines.
/// </summary>
public sealed class VirshCommandTests
{
    private const string Uuid = "4f1f2a3c-7e0b-4c55-9d0e-2b1d8c6a9e01";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Task WriteDomainAsync(DaemonUnderTest d) => File.WriteAllTextAsync(d.Directory.File("vm.xml"), $"""
        <domain type='kvm'>
          <name>vm</name>
          <uuid>{Uuid}</uuid>
          <memory unit='KiB'>1048576</memory>
          <vcpu placement='static'>2</vcpu>
          <os>
            <type arch='x86_64'>hvm</type>
          </os>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='{d.Directory.File("vda.qcow2")}'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='{d.Directory.File("vdb.qcow2")}'/>
              <target dev='vdb' bus='virtio'/>
            </disk>
          </devices>
        </domain>
        """, Ct);

    private static async Task SetUpAsync(DaemonUnderTest d)
    {
        await d.CreateImageAsync("vda.qcow2");
        await d.CreateImageAsync("vdb.qcow2");
        await WriteDomainAsync(d);
        await File.WriteAllTextAsync(d.Directory.File("c2.xml"), "<domaincheckpoint><name>c2</name><description>from a file</description></domaincheckpoint>", Ct);
        await File.WriteAllTextAsync(d.Directory.File("push.xml"), $"<domainbackup><disks><disk name='vda' type='file'><target file='{d.Directory.File("full-vda.qcow2")}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>", Ct);
    }

    [Fact]
    public async Task DomainLifeCycleAndQueries_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);

        Assert.Equal("Domain 'vm' defined from {dir}/vm.xml\n\n", (await twins.RunAsync("define", "{dir}/vm.xml")).Stdout);
        Assert.Equal(" Id   Name   State\n-----------------------\n -    vm     shut off\n\n", (await twins.RunAsync("list", "--all")).Stdout);
        await twins.RunAsync("list");
        await twins.RunAsync("list", "--all", "--name");
        await twins.RunAsync("list", "--all", "--uuid");
        await twins.RunAsync("list", "--inactive", "--name", "--uuid");
        await twins.RunAsync("dominfo", "vm");
        await twins.RunAsync("dominfo", Uuid);
        await twins.RunAsync("domstate", "vm", "--reason");
        await twins.RunAsync("domblklist", "vm");
        await twins.RunAsync("domblklist", "--details", "--domain", "vm");
        await twins.RunAsync("dumpxml", "vm");
        await twins.RunAsync("autostart", "vm");
        await twins.RunAsync("dominfo", "vm");
        await twins.RunAsync("autostart", "--disable", "vm");
        await twins.RunAsync("start", "vm");
        await twins.RunAsync("start", "vm");
        await twins.RunAsync("list");
        await twins.RunAsync("dominfo", "1");
        Assert.Equal("vda rd_req 0\nvda rd_bytes 0\nvda wr_req 0\nvda wr_bytes 0\nvda flush_operations 0\nvda rd_total_times 0\nvda wr_total_times 0\nvda flush_total_times 0\n\n", (await twins.RunAsync("domblkstat", "vm", "vda")).Stdout);
        await twins.RunAsync("domblkstat", "vm");
        await twins.RunAsync("domblkstat", "--human", "vm", "vdb");
        await twins.RunAsync("domblkstat", "vm", "vdz");
        await twins.RunAsync("domstate", "vm", "--reason");
        await twins.RunAsync("dumpxml", "vm");
        await twins.RunAsync("dumpxml", "vm", "--inactive");
        await twins.RunAsync("domblklist", "vm", "--inactive");
        await twins.RunAsync("shutdown", "vm");
        await twins.RunAsync("domstate", "vm", "--reason");
        await twins.RunAsync("start", "vm");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("shutdown", "vm");
        await twins.RunAsync("domstate", "vm", "--reason");
        await twins.RunAsync("start", "vm");
        await twins.RunAsync("domrename", "vm", "vm2");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("domblkstat", "vm", "vda");
        await twins.RunAsync("domrename", "vm", "vm");
        await twins.RunAsync("domrename", "vm", "");
        await twins.RunAsync("domrename", "vm", "a/b");
        await twins.RunAsync("domrename", "vm");
        Assert.Equal("Domain successfully renamed\n\n", (await twins.RunAsync("domrename", "vm", "vm2")).Stdout);
        await twins.RunAsync("list", "--all");
        await twins.RunAsync("domrename", "--new-name", "vm", "--domain", "vm2");
        await twins.RunAsync("undefine", "vm");
        await twins.RunAsync("list", "--all");

        // Errors: virsh's own line, libvirt's line, exit 1.
        var missing = await twins.RunAsync("dominfo", "nosuch");
        Assert.Equal((1, "error: failed to get domain 'nosuch'\n"), (missing.ExitCode, missing.Stderr));
        await twins.RunAsync("dominfo");
        await twins.RunAsync("define", "{dir}/nosuch.xml");
        await twins.RunAsync("start", "vm");
    }

    /// <summary>attach-disk, detach-disk and blockresize: documents, flags, refusals and words.</summary>
    [Fact]
    public async Task DiskHotplugAndResize_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(async d =>
        {
            await SetUpAsync(d);
            await d.CreateImageAsync("vdc.qcow2");
            await d.CreateImageAsync("vdd.qcow2");
            await d.CreateImageAsync("vdf.qcow2");
        });

        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--subdriver", "qcow2", "--targetbus", "virtio", "--alias", "ua-vdc", "--mode", "readonly", "--driver", "qemu", "--cache", "none", "--print-xml");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--sourcetype", "block", "--type", "disk", "--print-xml");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--subdriver", "qcow2");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--subdriver", "qcow2", "--config");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vda", "--subdriver", "qcow2", "--config");
        await twins.RunAsync("domblklist", "vm", "--inactive");
        await twins.RunAsync("detach-disk", "vm", "vdc", "--config", "--print-xml");
        await twins.RunAsync("detach-disk", "vm", "vdc", "--config");
        await twins.RunAsync("start", "vm");
        Assert.Equal("Disk attached successfully\n\n", (await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--subdriver", "qcow2", "--targetbus", "virtio")).Stdout);
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdd.qcow2", "vdc", "--subdriver", "qcow2");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdd.qcow2", "vdd", "--subdriver", "qcow2", "--persistent");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdd.qcow2", "vde", "--current", "--live");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdf.qcow2", "vdf", "--subdriver", "qcow2");
        await twins.RunAsync("detach-device-alias", "vm", "virtio-disk5", "--current", "--live");
        await twins.RunAsync("detach-device-alias", "vm", "nosuch");
        await twins.RunAsync("detach-device-alias", "vm", "virtio-disk5", "--config");
        Assert.Equal("Device detach request sent successfully\n\n", (await twins.RunAsync("detach-device-alias", "vm", "virtio-disk5")).Stdout);
        await twins.RunAsync("domblklist", "vm");
        await twins.RunAsync("domblklist", "vm", "--inactive");
        await twins.RunAsync("blockresize", "vm", "vdc", "32M");
        await twins.RunAsync("blockresize", "vm", "{dir}/vdd.qcow2", "20000");
        await twins.RunAsync("blockresize", "vm", "vdd", "1000000b");
        await twins.RunAsync("blockresize", "vm", "vdz", "1G");
        await twins.RunAsync("blockresize", "vm", "vdc", "lots");
        Assert.Equal("No errors found\n\n", (await twins.RunAsync("domblkerror", "vm")).Stdout);
        Assert.StartsWith("CPU model:           ", (await twins.RunAsync("nodeinfo")).Stdout, StringComparison.Ordinal);
        Assert.StartsWith("Capacity:       33554432\n", (await twins.RunAsync("domblkinfo", "vm", "vdc")).Stdout, StringComparison.Ordinal);
        await twins.RunAsync("domblkinfo", "vm", "vdz");
        await twins.RunAsync("detach-disk", "vm", "vdc");
        await twins.RunAsync("detach-disk", "vm", "{dir}/vdd.qcow2", "--persistent");
        await twins.RunAsync("detach-disk", "vm", "vdz");
        await twins.RunAsync("domblklist", "vm");
        await twins.RunAsync("domblklist", "vm", "--inactive");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("attach-disk", "vm", "{dir}/vdc.qcow2", "vdc");
        await twins.RunAsync("detach-disk", "vm", "vdb");
        await twins.RunAsync("blockresize", "vm", "vda", "1G");
        await twins.RunAsync("domblkerror", "vm");
    }

    /// <summary>change-media and update-device: the documents virsh builds, flags, refusals and words.</summary>
    [Fact]
    public async Task ChangeMediaAndUpdateDevice_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(async d =>
        {
            await d.CreateImageAsync("vda.qcow2");
            await d.CreateImageAsync("cd1.iso");
            await d.CreateImageAsync("cd2.iso");
            await File.WriteAllTextAsync(d.Directory.File("cd.xml"), $"""
                <domain type='kvm'>
                  <name>cd</name>
                  <memory unit='KiB'>1048576</memory>
                  <devices>
                    <disk type='file' device='disk'>
                      <driver name='qemu' type='qcow2'/>
                      <source file='{d.Directory.File("vda.qcow2")}'/>
                      <target dev='vda' bus='virtio'/>
                    </disk>
                    <disk type='file' device='cdrom'>
                      <driver name='qemu' type='qcow2'/>
                      <source file='{d.Directory.File("cd1.iso")}' startupPolicy='optional'/>
                      <target dev='hdc' bus='ide'/>
                      <readonly/>
                    </disk>
                    <disk type='file' device='floppy'>
                      <target dev='fda'/>
                    </disk>
                  </devices>
                </domain>
                """, Ct);
            await File.WriteAllTextAsync(d.Directory.File("serial.xml"), $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{d.Directory.File("vda.qcow2")}'/><target dev='vda' bus='virtio'/><serial>x</serial></disk>", Ct);
        });

        await twins.RunAsync("define", "{dir}/cd.xml");
        await twins.RunAsync("change-media", "cd", "hdc", "{dir}/cd2.iso", "--print-xml");
        await twins.RunAsync("change-media", "cd", "{dir}/cd1.iso", "--eject", "--print-xml");
        await twins.RunAsync("change-media", "cd", "fda", "/dev/null", "--insert", "--block", "--print-xml");
        await twins.RunAsync("change-media", "cd", "fda", "--eject");
        await twins.RunAsync("change-media", "cd", "hdc", "{dir}/cd2.iso", "--insert");
        await twins.RunAsync("change-media", "cd", "fda", "--insert");
        await twins.RunAsync("change-media", "cd", "vda", "{dir}/cd2.iso");
        await twins.RunAsync("change-media", "cd", "hdc", "--eject", "--insert");
        await twins.RunAsync("change-media", "cd", "hdc", "--eject", "--block");
        await twins.RunAsync("change-media", "cd", "hdc", "--live", "--current");
        await twins.RunAsync("change-media", "cd", "hdc", "{dir}/cd2.iso", "--live");
        Assert.Equal("Successfully updated media.\n", (await twins.RunAsync("change-media", "cd", "hdc", "{dir}/cd2.iso")).Stdout);
        await twins.RunAsync("domblklist", "cd", "--inactive");
        await twins.RunAsync("start", "cd");
        await twins.RunAsync("change-media", "cd", "hdc", "--update");
        await twins.RunAsync("change-media", "cd", "fda", "{dir}/cd1.iso", "--insert", "--force");
        await twins.RunAsync("change-media", "cd", "hdc", "{dir}/cd1.iso", "--config");
        await twins.RunAsync("domblklist", "cd");
        await twins.RunAsync("domblklist", "cd", "--inactive");
        await twins.RunAsync("update-device", "cd", "{dir}/serial.xml");
        await twins.RunAsync("update-device", "cd", "{dir}/serial.xml", "--persistent");
        Assert.Equal("Device updated successfully\n\n", (await twins.RunAsync("update-device", "cd", "{dir}/serial.xml", "--config")).Stdout);
        await twins.RunAsync("update-device", "cd", "{dir}/nosuch.xml");
        await twins.RunAsync("update-device", "cd", "{dir}/serial.xml", "--current", "--live");
        await twins.RunAsync("destroy", "cd");
    }

    [Fact]
    public async Task SuspendResumeAndStateFilters_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);

        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("suspend", "vm");
        await twins.RunAsync("resume", "vm");
        await twins.RunAsync("start", "vm");
        Assert.Equal("Domain 'vm' suspended\n\n", (await twins.RunAsync("suspend", "vm")).Stdout);
        await twins.RunAsync("suspend", "vm");
        Assert.Equal("paused (user)\n\n", (await twins.RunAsync("domstate", "vm", "--reason")).Stdout);
        await twins.RunAsync("list");
        await twins.RunAsync("list", "--state-paused");
        await twins.RunAsync("list", "--state-running", "--name");
        await twins.RunAsync("list", "--all", "--state-shutoff");
        await twins.RunAsync("list", "--all", "--state-other", "--name");
        await twins.RunAsync("dominfo", "vm");
        await twins.RunAsync("shutdown", "vm");
        Assert.Equal("Domain 'vm' resumed\n\n", (await twins.RunAsync("resume", "vm")).Stdout);
        var again = await twins.RunAsync("resume", "vm");
        Assert.Equal((1, "error: Failed to resume domain 'vm'\nerror: Requested operation is not valid: domain is already running\n"), (again.ExitCode, again.Stderr));
        await twins.RunAsync("domstate", "vm", "--reason");
        await twins.RunAsync("list", "--state-running");
        await twins.RunAsync("suspend", "vm");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("list", "--all", "--state-shutoff", "--name");

        // Started paused: paused (user) until the resume, then running (unpaused).
        Assert.Equal("Domain 'vm' started\n\n", (await twins.RunAsync("start", "vm", "--paused")).Stdout);
        Assert.Equal("paused (user)\n\n", (await twins.RunAsync("domstate", "vm", "--reason")).Stdout);
        await twins.RunAsync("resume", "vm");
        Assert.Equal("running (unpaused)\n\n", (await twins.RunAsync("domstate", "vm", "--reason")).Stdout);
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("undefine", "vm");
    }

    [Fact]
    public async Task CheckpointCommands_WithEveryOption_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);
        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("checkpoint-create-as", "vm", "c0");
        await twins.RunAsync("start", "vm");
        Assert.Contains(" vm ", (await twins.RunAsync("list", "--with-checkpoint")).Stdout, StringComparison.Ordinal);
        await twins.RunAsync("list", "--all", "--without-checkpoint", "--name");
        await twins.RunAsync("list", "--all", "--with-checkpoint", "--without-checkpoint", "--name");

        await twins.RunAsync("checkpoint-create-as", "vm", "c1", "first");
        await twins.RunAsync("checkpoint-create", "vm", "{dir}/c2.xml");
        await twins.RunAsync("checkpoint-create-as", "--domain", "vm", "--name", "c3", "--diskspec", "vda,checkpoint=bitmap", "--diskspec", "vdb,checkpoint=no");
        await twins.RunAsync("checkpoint-create-as", "vm", "--print-xml", "--name", "c9", "--description", "a <b> & 'c'", "--diskspec", "vda,checkpoint=bitmap,bitmap=b9");
        await twins.RunAsync("checkpoint-create-as", "vm", "--print-xml", "--diskspec", "vda,size=1");
        await twins.RunAsync("checkpoint-create-as", "vm", "c1");
        await twins.RunAsync("checkpoint-create", "vm", "{dir}/c2.xml", "--redefine-validate");
        Assert.Contains(" c3     YYYY-MM-DD HH:MM:SS +ZZZZ   c2\n", (await twins.RunAsync("checkpoint-list", "vm", "--parent")).Stdout, StringComparison.Ordinal);
        await twins.RunAsync("checkpoint-list", "vm");
        await twins.RunAsync("checkpoint-list", "vm", "--tree");
        await twins.RunAsync("checkpoint-list", "vm", "--name");
        await twins.RunAsync("checkpoint-list", "vm", "--name", "--topological");
        await twins.RunAsync("checkpoint-list", "vm", "--roots");
        await twins.RunAsync("checkpoint-list", "vm", "--leaves", "--name");
        await twins.RunAsync("checkpoint-list", "vm", "--no-leaves", "--parent");
        await twins.RunAsync("checkpoint-list", "vm", "--from", "c1", "--name");
        await twins.RunAsync("checkpoint-list", "vm", "--from", "c1", "--descendants", "--name");
        await twins.RunAsync("checkpoint-list", "vm", "--from", "c1", "--tree");
        await twins.RunAsync("checkpoint-list", "vm", "--tree", "--name");
        await twins.RunAsync("checkpoint-list", "vm", "--roots", "--parent");
        await twins.RunAsync("checkpoint-list", "vm", "--leaves", "--tree");
        await twins.RunAsync("checkpoint-list", "vm", "--descendants");
        await twins.RunAsync("checkpoint-list", "vm", "--from", "nosuch");
        await twins.RunAsync("checkpoint-info", "vm", "c1");
        await twins.RunAsync("checkpoint-info", "vm", "c0");
        await twins.RunAsync("checkpoint-info", "vm", "nosuch");
        await twins.RunAsync("checkpoint-parent", "vm", "c2");
        await twins.RunAsync("checkpoint-parent", "vm", "c0");
        await twins.RunAsync("checkpoint-dumpxml", "vm", "c2");
        await twins.RunAsync("checkpoint-dumpxml", "vm", "c3", "--no-domain", "--size");
        await twins.RunAsync("checkpoint-dumpxml", "vm", "c1", "--security-info");
        await twins.RunAsync("checkpoint-delete", "vm", "c2", "--children-only");
        await twins.RunAsync("checkpoint-list", "vm", "--tree");
        await twins.RunAsync("checkpoint-delete", "vm", "c1", "--metadata");
        await twins.RunAsync("checkpoint-delete", "vm", "c0", "--children");
        await twins.RunAsync("checkpoint-delete", "vm", "c0");
        await twins.RunAsync("checkpoint-list", "vm");
        await twins.RunAsync("checkpoint-create-as", "vm", "c4");
        await twins.RunAsync("destroy", "vm");
        await twins.RunAsync("undefine", "vm");
        await twins.RunAsync("undefine", "vm", "--checkpoints-metadata");
        await twins.RunAsync("list", "--all");
    }

    [Fact]
    public async Task PushBackupAndJob_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);
        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("domjobinfo", "vm");
        await twins.RunAsync("start", "vm");
        await twins.OnBothAsync(d => Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 1M", "-c", "flush", d.GuestUri("vm", "vda")));
        await twins.RunAsync("domjobinfo", "vm");
        await twins.RunAsync("backup-dumpxml", "vm");
        await twins.RunAsync("domjobabort", "vm");

        await twins.RunAsync("backup-begin", "vm", "{dir}/push.xml");
        await twins.WaitForJobEndAsync("vm");
        var completed = await twins.RunAsync("domjobinfo", "vm", "--completed", "--keep-completed");
        // A full push counts the whole 16 MiB disk, holes included, as QEMU's backup job does.
        Assert.Contains("File processed:   16.000 MiB\n", completed.Stdout, StringComparison.Ordinal);
        await twins.RunAsync("domjobinfo", "vm", "--completed");
        await twins.RunAsync("domjobinfo", "vm", "--completed");
        await twins.RunAsync("backup-begin", "vm", "--backupxml", "{dir}/nosuch.xml");
        await twins.RunAsync("event", "vm", "--event", "job-completed", "--timeout", "1");
        await twins.RunAsync("event", "--event", "lifecycle", "--loop", "--timeout", "1");
        await twins.RunAsync("event", "--list");
    }

    [Fact]
    public async Task LifecycleEvents_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);
        await twins.RunAsync("define", "{dir}/vm.xml");

        // Each program waits for one event while the domain starts on its daemon.
        var virsh = twins.RunVirshAsync("event", "vm", "--event", "lifecycle", "--timeout", "60");
        var tidemark = twins.RunTidemarkAsync("event", "--domain", "vm", "--event", "lifecycle", "--timeout", "60");
        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        await twins.RunAsync("start", "vm");

        // A start's first event is RESUMED, as libvirtd passes on QEMU's RESUME before its STARTED.
        var expected = await virsh;
        Assert.Equal("event 'lifecycle' for domain 'vm': Resumed Unpaused\nevents received: 1\n\n", expected.Stdout);

        Assert.Equal(WithoutVirshRace(expected), await tidemark);
    }

    /// <summary>
    /// virsh 9.0 sometimes closes its connection while its event loop thread still holds the
    /// event's domain, and says so; that line is virsh's own race, not part of the answer.
    /// </summary>
    private static CliRun WithoutVirshRace(CliRun run)
        => run with { Stderr = run.Stderr.Replace("error: One or more references were leaked after disconnect from the hypervisor\n", "", StringComparison.Ordinal) };

    [Fact]
    public async Task DeviceEvents_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(async d =>
        {
            await SetUpAsync(d);
            await d.CreateImageAsync("vdc.qcow2");
        });
        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("start", "vm");

        foreach (var (name, change) in new[]
        {
            ("device-added", new[] { "attach-disk", "vm", "{dir}/vdc.qcow2", "vdc", "--subdriver", "qcow2", "--alias", "ua-vdc" }),
            ("device-removed", new[] { "detach-device-alias", "vm", "ua-vdc" }),
        })
        {
            var virsh = twins.RunVirshAsync("event", "vm", "--event", name, "--timeout", "60");
            var tidemark = twins.RunTidemarkAsync("event", "vm", "--event", name, "--timeout", "60");
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            await twins.RunAsync(change);

            var expected = await virsh;
            Assert.Equal($"event '{name}' for domain 'vm': ua-vdc\nevents received: 1\n\n", expected.Stdout);
            Assert.Equal(WithoutVirshRace(expected), await tidemark);
        }
    }

    [Fact]
    public async Task IoErrorEvents_PrintAsVirshPrintsThem()
    {
        await using var twins = await VirshTwins.StartAsync();
        var mounts = new List<TmpfsMount>();
        try
        {
            // Each domain's disk on a 2 MiB file system that its guest's write fills.
            await twins.OnBothAsync(async d =>
            {
                var small = d.Directory.File("small");
                mounts.Add(await TmpfsMount.SmallAsync(small, 2 << 20));
                await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", Path.Combine(small, "vda.qcow2"), "16M");
                await File.WriteAllTextAsync(d.Directory.File("io.xml"), DomainDocuments.WithQcow2Disks("io", [("vda", Path.Combine(small, "vda.qcow2"))]), Ct);
            });
            await twins.RunAsync("define", "{dir}/io.xml");
            await twins.RunAsync("start", "io");

            foreach (var name in (string[])["io-error", "io-error-reason"])
            {
                var virsh = twins.RunVirshAsync("event", "io", "--event", name, "--timeout", "60");
                var tidemark = twins.RunTidemarkAsync("event", "io", "--event", name, "--timeout", "60");
                await Task.Delay(TimeSpan.FromSeconds(3), Ct);

                // The write pauses the domain and stays held; the resume after the events
                // retries it, which pauses the domain again for the next round.
                var writes = new List<Task<PeerResult>>();
                await twins.OnBothAsync(d =>
                {
                    writes.Add(Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x61 0 4M", d.GuestUri("io", "vda")]));
                    return Task.CompletedTask;
                });
                var expected = await virsh;
                Assert.Equal($"event '{name}' for domain 'io': {{dir}}/small/vda.qcow2 (virtio-disk0) pause{(name == "io-error" ? "" : " due to enospc")}\nevents received: 1\n\n", expected.Stdout);
                Assert.Equal(WithoutVirshRace(expected), await tidemark);
                await twins.RunAsync("domstate", "io", "--reason");
                await twins.RunAsync("destroy", "io");
                await Task.WhenAll(writes);
                await twins.RunAsync("start", "io");
            }

            await twins.RunAsync("destroy", "io");
        }
        finally
        {
            foreach (var mount in mounts)
            {
                await mount.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task JobCompletedEvent_PrintsAsVirshPrintsIt()
    {
        await using var twins = await VirshTwins.StartAsync();
        await twins.OnBothAsync(SetUpAsync);
        await twins.RunAsync("define", "{dir}/vm.xml");
        await twins.RunAsync("start", "vm");

        var virsh = twins.RunVirshAsync("event", "vm", "--event", "job-completed", "--timeout", "60");
        var tidemark = twins.RunTidemarkAsync("event", "vm", "--event", "job-completed", "--timeout", "60");
        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        await twins.RunAsync("backup-begin", "vm", "{dir}/push.xml");

        var expected = await virsh;
        Assert.StartsWith("event 'job-completed' for domain 'vm':\n\toperation: 9\n", expected.Stdout, StringComparison.Ordinal);
        Assert.Contains("\tsuccess: 1\nevents received: 1\n", expected.Stdout, StringComparison.Ordinal);
        Assert.Equal(Elapsed(expected), Elapsed(await tidemark));

        static CliRun Elapsed(CliRun run) => run with { Stdout = System.Text.RegularExpressions.Regex.Replace(run.Stdout, "time_elapsed: [0-9]+", "time_elapsed: N") };
    }

    [Fact]
    public async Task Json_DomNbd_AndTheConnectionUri()
    {
        await using var daemon = await DaemonUnderTest.StartAsync("vj");
        await SetUpAsync(daemon);
        var env = new Dictionary<string, string?> { ["TIDEMARK_DEFAULT_URI"] = daemon.Uri };

        // No -c: the URI comes from TIDEMARK_DEFAULT_URI; -c may also follow the verb.
        var defined = await CliRun.RunAsync(["define", daemon.Directory.File("vm.xml")], null, env);
        Assert.Equal((0, "Domain 'vm' defined from " + daemon.Directory.File("vm.xml") + "\n\n"), (defined.ExitCode, defined.Stdout));
        Assert.Equal(0, (await CliRun.RunAsync("start", "vm", "-c", daemon.Uri)).ExitCode);
        Assert.Equal(0, (await CliRun.RunAsync("-c", daemon.Uri, "checkpoint-create-as", "vm", "c1")).ExitCode);

        using var list = JsonDocument.Parse((await CliRun.RunAsync("list", "--json", "-c", daemon.Uri)).Stdout);
        var domain = Assert.Single(list.RootElement.EnumerateArray());
        Assert.Equal(("vm", Uuid, "running", 1), (domain.GetProperty("name").GetString(), domain.GetProperty("uuid").GetString(), domain.GetProperty("state").GetString(), domain.GetProperty("id").GetInt32()));

        using var info = JsonDocument.Parse((await CliRun.RunAsync("dominfo", "vm", "--json", "-c", daemon.Uri)).Stdout);
        Assert.Equal((2, 1048576UL), (info.RootElement.GetProperty("cpus").GetInt32(), info.RootElement.GetProperty("max_memory_kib").GetUInt64()));

        using var disks = JsonDocument.Parse((await CliRun.RunAsync("domblklist", "vm", "--json", "-c", daemon.Uri)).Stdout);
        Assert.Equal(["vda", "vdb"], disks.RootElement.EnumerateArray().Select(d => d.GetProperty("target").GetString()));

        using var checkpoints = JsonDocument.Parse((await CliRun.RunAsync("checkpoint-list", "vm", "--json", "-c", daemon.Uri)).Stdout);
        var c1 = Assert.Single(checkpoints.RootElement.EnumerateArray());
        Assert.Equal("c1", c1.GetProperty("name").GetString());
        Assert.InRange(c1.GetProperty("creation_time").GetInt64(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 600, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 5);

        using var checkpoint = JsonDocument.Parse((await CliRun.RunAsync("checkpoint-info", "vm", "c1", "--json", "-c", daemon.Uri)).Stdout);
        Assert.Equal(0, checkpoint.RootElement.GetProperty("children").GetInt32());

        using var job = JsonDocument.Parse((await CliRun.RunAsync("domjobinfo", "vm", "--json", "-c", daemon.Uri)).Stdout);
        Assert.Equal("None", job.RootElement.GetProperty("type").GetString());

        // domnbd names each disk's export; a guest writes through it.
        var nbd = await CliRun.RunAsync("domnbd", "vm", "-c", daemon.Uri);
        Assert.Contains($" vda      {daemon.GuestUri("vm", "vda")}\n", nbd.Stdout, StringComparison.Ordinal);
        Assert.Contains($" vdb      {daemon.GuestUri("vm", "vdb")}\n", nbd.Stdout, StringComparison.Ordinal);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "flush", daemon.GuestUri("vm", "vdb"));

        // backup-begin --wait follows the job to its end and prints its statistics.
        await File.WriteAllTextAsync(daemon.Directory.File("push-b.xml"), $"<domainbackup><disks><disk name='vda' backup='no'/><disk name='vdb' type='file'><target file='{daemon.Directory.File("full-vdb.qcow2")}'/><driver type='qcow2'/></disk></disks></domainbackup>", Ct);
        var waited = await CliRun.RunAsync("backup-begin", "vm", daemon.Directory.File("push-b.xml"), "--wait", "-c", daemon.Uri);
        Assert.True(waited.ExitCode == 0, waited.Stderr);
        Assert.StartsWith("Backup started\n", waited.Stdout, StringComparison.Ordinal);
        Assert.Contains("Job type:         Completed   \nOperation:        Backup      \n", waited.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", daemon.GuestUri("vm", "vdb"), daemon.Directory.File("full-vdb.qcow2")])).ExitCode);

        // domjobinfo --wait follows a running job to its end: a pull backup runs until it is aborted.
        await File.WriteAllTextAsync(daemon.Directory.File("pull.xml"), $"<domainbackup mode='pull'><server transport='unix' socket='{daemon.Directory.File("pull.sock")}'/><disks><disk name='vda' backup='no'/><disk name='vdb' type='file'><scratch file='{daemon.Directory.File("vdb.scratch")}'/></disk></disks></domainbackup>", Ct);
        Assert.Equal(0, (await CliRun.RunAsync("backup-begin", "vm", daemon.Directory.File("pull.xml"), "-c", daemon.Uri)).ExitCode);
        await using (var following = await CliProcess.StartAsync("domjobinfo", "vm", "--wait", "-c", daemon.Uri))
        {
            await following.WaitForStdoutAsync("Job: ", TimeSpan.FromSeconds(60));
            Assert.Equal(0, (await CliRun.RunAsync("domjobabort", "vm", "-c", daemon.Uri)).ExitCode);
            var followed = await following.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(followed.ExitCode == 0, followed.Stderr);
            // A pull job ends by abort, and libvirt records it as completed (qemuBackupNotifyBlockjobEnd
            // calls only an aborted push cancelled): the printed statistics are that completed job's.
            Assert.Contains("Job: 0.000 B read\n", followed.Stdout, StringComparison.Ordinal);
            Assert.Contains("Job type:         Completed   \nOperation:        Backup      \n", followed.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("Job type:         None", (await CliRun.RunAsync("domjobinfo", "vm", "-c", daemon.Uri)).Stdout, StringComparison.Ordinal);

        // Without -c or the variable: the default daemon's socket, named in the error when nothing listens there.
        var home = daemon.Directory.File("home");
        var defaultRun = await CliRun.RunAsync(["list"], null, new Dictionary<string, string?> { ["TIDEMARK_DEFAULT_URI"] = null, ["XDG_STATE_HOME"] = home });
        var socket = Environment.UserName == "root" ? "/var/lib/tidemark/tidemark-sock" : Path.Combine(home, "tidemark", "tidemark-sock");
        if (!File.Exists(socket))
        {
            Assert.Equal((1, $"error: failed to connect to the hypervisor\nerror: Failed to connect socket to '{socket}': No such file or directory\n"), (defaultRun.ExitCode, defaultRun.Stderr));
        }
    }
}
