using Tidemark.Daemon.Tests.Support;
using Tidemark.Engine.Domains;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// virDomainSuspend / virDomainResume through stock virsh 9.0 and libvirt-python: the state and
/// reason every query reports, the list filters, libvirt's refusals, the guest held while paused,
/// and the lifecycle events libvirt's QEMU driver raises (SUSPENDED_PAUSED, RESUMED_UNPAUSED).
/// </summary>
public sealed class SuspendTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task SuspendAndResume_AsVirshPrintsThem()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("vm", "write -P 0x61 0 64k");
        await Virsh.RunOkAsync(test, "define", await DefineSecondAsync(test));

        Assert.Equal("Domain 'vm' suspended\n\n", await Virsh.RunOkAsync(test, "suspend", "vm"));
        Assert.Equal("Domain 'vm' suspended\n\n", await Virsh.RunOkAsync(test, "suspend", "vm"));
        Assert.Equal("paused (user)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm", "--reason"));
        Assert.Equal("paused\n\n", await Virsh.RunOkAsync(test, "domstate", "vm"));
        Assert.Contains("\nState:          paused\n", await Virsh.RunOkAsync(test, "dominfo", "vm"), StringComparison.Ordinal);
        Assert.Matches(@"\n \d+ +vm +paused\n", await Virsh.RunOkAsync(test, "list"));

        // VIR_CONNECT_LIST_DOMAINS_PAUSED / RUNNING / SHUTOFF.
        Assert.Equal("vm\n\n", await Virsh.RunOkAsync(test, "list", "--state-paused", "--name"));
        Assert.Equal("\n", await Virsh.RunOkAsync(test, "list", "--state-running", "--name"));
        Assert.Equal("other\n\n", await Virsh.RunOkAsync(test, "list", "--all", "--state-shutoff", "--name"));
        Assert.Equal("vm\nother\n\n", await Virsh.RunOkAsync(test, "list", "--all", "--state-paused", "--state-shutoff", "--name"));

        // A guest write issued now waits for the resume.
        var gate = test.Daemon.Host!.LookupByName("vm").Running!.Gate;
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x62 1M 64k", $"nbd+unix:///vda?socket={test.GuestSocket("vm")}"], timeout: TimeSpan.FromMinutes(1));
        await UntilAsync(() => gate.Waiting == 1);
        Assert.False(write.IsCompleted);

        // A paused guest cannot be asked to power off (qemuDomainShutdownFlagsMonitor).
        var shutdown = await Virsh.RunAsync(test, "shutdown", "vm");
        Assert.Equal(1, shutdown.ExitCode);
        Assert.Equal("error: Failed to shutdown domain 'vm'\nerror: Requested operation is not valid: domain is not running\n", shutdown.Stderr);

        Assert.Equal("Domain 'vm' resumed\n\n", await Virsh.RunOkAsync(test, "resume", "vm"));
        Assert.Equal(0, (await write).ExitCode);
        Assert.Equal("running (unpaused)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm", "--reason"));
        Assert.Equal("vm\n\n", await Virsh.RunOkAsync(test, "list", "--state-running", "--name"));

        var again = await Virsh.RunAsync(test, "resume", "vm");
        Assert.Equal(1, again.ExitCode);
        Assert.Equal("error: Failed to resume domain 'vm'\nerror: Requested operation is not valid: domain is already running\n", again.Stderr);

        // Destroyed while paused; then both verbs are refused for a domain shut off.
        await Virsh.RunOkAsync(test, "suspend", "vm");
        Assert.Equal("Domain 'vm' destroyed\n\n", await Virsh.RunOkAsync(test, "destroy", "vm"));
        Assert.Equal("shut off (destroyed)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm", "--reason"));
        var suspendOff = await Virsh.RunAsync(test, "suspend", "vm");
        Assert.Equal("error: Failed to suspend domain 'vm'\nerror: Requested operation is not valid: domain is not running\n", suspendOff.Stderr);
        var resumeOff = await Virsh.RunAsync(test, "resume", "vm");
        Assert.Equal("error: Failed to resume domain 'vm'\nerror: Requested operation is not valid: domain is not running\n", resumeOff.Stderr);

        // A new start runs as booted, not unpaused.
        await Virsh.RunOkAsync(test, "start", "vm");
        Assert.Equal("running (booted)\n\n", await Virsh.RunOkAsync(test, "domstate", "vm", "--reason"));
        await Virsh.RunOkAsync(test, "destroy", "vm");
        await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x62 1M 64k", image);
    }

    [Fact]
    public async Task SuspendAndResume_RaiseLibvirtsLifecycleEvents()
    {
        const string Script = """
            import sys, libvirt
            libvirt.virEventRegisterDefaultImpl()
            conn = libvirt.open(sys.argv[1])
            dom = conn.lookupByName('vm')
            seen = []
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda c, d, e, detail, o: seen.append((e, detail)), None)
            dom.suspend()
            print('state', dom.state(), dom.info()[0])
            dom.suspend()
            dom.resume()
            print('state', dom.state(), dom.info()[0])
            dom.suspend()
            dom.resume()
            while len(seen) < 4:
                libvirt.virEventRunDefaultImpl()
            print('events', seen)
            """;
        await using var test = await TestDaemon.StartAsync();
        await test.StartDomainAsync("vm", "write -P 0x61 0 64k");
        var result = await Peer.RunAsync("/usr/bin/python3", ["-c", Script, test.Uri], timeout: TimeSpan.FromMinutes(1));
        Assert.True(result.ExitCode == 0, result.Stderr);

        // SUSPENDED (3) PAUSED (0) once: the second suspend changes nothing; RESUMED (4)
        // UNPAUSED (0); then both again. The same as libvirtd 9.0 with QEMU (VirshDifferentialTests).
        Assert.Equal(
            """
            state [3, 1] 3
            state [1, 5] 1
            events [(3, 0), (4, 0), (3, 0), (4, 0)]

            """,
            result.Stdout);
        Assert.Equal(DomainState.Running, test.Daemon.Host!.LookupByName("vm").State);
    }

    private static async Task<string> DefineSecondAsync(TestDaemon test)
    {
        var image = await test.CreateImageAsync("other", "vda");
        var xml = test.Directory.File("other.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml("other", ("vda", image)), Ct);
        return xml;
    }

    private static async Task UntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the guest's write was not seen at the gate");
            await Task.Delay(10, Ct);
        }
    }
}
