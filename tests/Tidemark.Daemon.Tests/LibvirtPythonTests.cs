using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// libvirt-python 9.0 with its default event loop: define, start, checkpoint, push backup, and
/// the JOB_COMPLETED event (MESSAGE 363) with the completed job's statistics; then the same
/// statistics once more through virDomainGetJobStats(COMPLETED), and never again. The start's
/// lifecycle events are libvirtd's with QEMU: RESUMED (UNPAUSED) from QEMU's RESUME, then STARTED
/// (BOOTED); the destroy's SHUTDOWN (HOST), then STOPPED (DESTROYED).
/// </summary>
public sealed class LibvirtPythonTests
{
    private const string Script = """
        import sys, threading, libvirt

        uri, domain_xml, target = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
        libvirt.virEventRegisterDefaultImpl()
        conn = libvirt.open(uri)
        print("lib", conn.getLibVersion())
        dom = conn.defineXML(domain_xml)
        lifecycle = []
        conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda c, d, e, detail, o: lifecycle.append((e, detail)), None)
        done = threading.Event()
        completed = {}
        def on_job(c, d, params, opaque):
            completed.update(params)
            done.set()
        conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_job, None)
        dom.create()
        print("state", dom.state())
        cp = dom.checkpointCreateXML("<domaincheckpoint><name>p1</name></domaincheckpoint>")
        print("checkpoint", cp.getName(), [c.getName() for c in dom.listAllCheckpoints()])
        dom.backupBegin("<domainbackup><disks><disk name='vda' type='file'><target file='%s'/><driver type='qcow2'/></disk></disks></domainbackup>" % target,
                        "<domaincheckpoint><name>p2</name></domaincheckpoint>")
        while not done.is_set():
            libvirt.virEventRunDefaultImpl()
        print("event", completed["operation"], completed["success"], completed["disk_total"] == completed["disk_processed"])
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        print("stats", stats["type"], stats["operation"], stats["success"])
        print("again", dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"])
        print("parent", dom.checkpointLookupByName("p2").getParent().getName())
        try:
            dom.checkpointLookupByName("p1").getParent()
        except libvirt.libvirtError as e:
            print("root", e.get_error_code(), e.get_error_domain())
        dom.destroy()
        for _ in range(20):
            if lifecycle and lifecycle[-1][0] == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                break
            libvirt.virEventRunDefaultImpl()
        print("lifecycle", lifecycle)
        try:
            conn.lookupByName("nosuch")
        except libvirt.libvirtError as e:
            print("missing", e.get_error_code(), e.get_error_message())
        conn.close()
        """;

    [Fact]
    public async Task DefineStartCheckpointBackup_JobCompletedEventCarriesTheStatistics()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("py", "vda");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 1M", image);
        var script = test.Directory.File("backup.py");
        await File.WriteAllTextAsync(script, Script, TestDaemon.Ct);
        var domainXml = test.Directory.File("py.xml");
        await File.WriteAllTextAsync(domainXml, TestDaemon.DomainXml("py", ("vda", image)), TestDaemon.Ct);
        var target = test.Directory.File("py-full.qcow2");

        var result = await Peer.RunAsync("/usr/bin/python3", [script, test.Uri, domainXml, target], timeout: TimeSpan.FromMinutes(2));

        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        Assert.Equal(
            """
            lib 9000000
            state [1, 1]
            checkpoint p1 ['p1']
            event 9 True True
            stats 3 9 True
            again 0
            parent p1
            root 103 10
            lifecycle [(4, 0), (2, 0), (6, 2), (5, 1)]
            missing 42 Domain not found: no domain with matching name 'nosuch'

            """.ReplaceLineEndings("\n"),
            result.Stdout);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", target, image]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
    }
}
