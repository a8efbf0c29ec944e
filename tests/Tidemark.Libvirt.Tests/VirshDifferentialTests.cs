using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Stock virsh runs one command sequence against the real libvirtd and against Tidemark's
/// daemon, each with an equivalent domain; the transcripts must be equal once what must differ
/// between two hosts (paths, UUIDs, times, ids) is masked (<see cref="VirshTranscript.Mask"/>).
/// </summary>
/// <remarks>
/// Commands while a backup runs (a second backup-begin among them, which waits 30 s for the
/// domain's job on both) are compared in <see cref="BackupConcurrencyDifferentialTests"/>.
/// </remarks>
public sealed class VirshDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DomainAndCheckpointCommands_PrintTheSameOnBoth()
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tdv");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);

        // The same domain document on both, images in each host's own directory.
        var real = await RunAsync(new VirshTranscript(libvirtd.Uri), libvirtd.Directory.Path, async (disk) =>
            await libvirtd.GuestWriteAsync("dv", disk, "write -P 0x41 0 1M"));
        var ours = await RunAsync(new VirshTranscript($"qemu+unix:///system?socket={daemon.SocketPath}"), tidemarkDir.Path, async (disk) =>
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 1M", "-c", "flush", $"nbd+unix:///{disk}?socket={Path.Combine(tidemarkDir.File("state"), "run", "dv.sock")}"));

        // Equal, and what both say is what libvirt says of this state.
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh domstate dv --reason\nshut off (destroyed)\n", real, StringComparison.Ordinal);
        Assert.Contains("OS Type:        hvm\nState:          running\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='1048576'/>", real, StringComparison.Ordinal);
        Assert.Contains("c1\n  |\n  +- c3\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Cannot access storage file 'DIR/dv/vdb.qcow2' (as uid:0, gid:0): No such file or directory\n", real, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PullBackupCommands_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdv", (uri, directory) => RunBackupAsync(new VirshTranscript(uri), directory), Ct);
        Assert.Equal(real, ours);
        Assert.Contains("exportbitmap='backup-vda'", real, StringComparison.Ordinal);
        Assert.Contains("Job type:         Completed   \nOperation:        Backup      \n", real, StringComparison.Ordinal);
        Assert.Contains("Error message:    Operation canceled\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Operation not supported: cannot perform disk backup for inactive domain\n", real, StringComparison.Ordinal);
        Assert.Contains("error: failed to create image file 'DIR/pb/no-such-dir/vda.qcow2': No such file or directory\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh destroy pb\nDomain 'pb' destroyed\n\n[exit 0]\n$ virsh domjobinfo pb --completed\nJob type:         Cancelled   \n", real, StringComparison.Ordinal);
    }

    /// <summary>
    /// The paused state: suspend (twice), the state and reason, the list filters, a checkpoint
    /// taken while paused, resume (twice), shutdown and destroy of a paused domain, both verbs
    /// on a domain shut off; and the lifecycle events libvirt-python receives for suspend and
    /// resume (a second suspend raises none).
    /// </summary>
    [Fact]
    public async Task SuspendAndResume_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tds", RunSuspendAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh domstate sp --reason\npaused (user)\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh list --state-paused\n Id   Name   State\n---------------------\n ID    sp     paused\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-create-as sp k1\nDomain checkpoint k1 created\n[exit 0]\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh resume sp\n\n[stderr]\nerror: Failed to resume domain 'sp'\nerror: Requested operation is not valid: domain is already running\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domstate sp --reason\nrunning (unpaused)\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh shutdown sp\n\n[stderr]\nerror: Failed to shutdown domain 'sp'\nerror: Requested operation is not valid: domain is not running\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh suspend sp\n\n[stderr]\nerror: Failed to suspend domain 'sp'\nerror: Requested operation is not valid: domain is not running\n", real, StringComparison.Ordinal);
        Assert.EndsWith("events [(3, 0), (4, 0), (3, 0), (4, 0)]\n", real, StringComparison.Ordinal);
    }

    /// <summary>
    /// Starting paused (<c>start --paused</c>, <c>create --paused</c>): the state and reason, the
    /// list filter, a checkpoint taken before the guest ever ran, the resume; then a plain start
    /// and a plain create for comparison. <c>virsh event --all --loop</c> follows the whole
    /// script, so every lifecycle event of start, create, resume and destroy is compared, in
    /// order, with libvirtd's and QEMU's.
    /// </summary>
    [Fact]
    public async Task StartPaused_PrintsAndAnnouncesTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdp", RunStartPausedAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh domstate sq --reason\npaused (user)\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh list --state-paused\n Id   Name   State\n---------------------\n ID    sq     paused\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domstate cq --reason\npaused (user)\n", real, StringComparison.Ordinal);

        // Started paused: STARTED, then SUSPENDED (qemuDomainObjStart, qemuDomainCreateXML). Started
        // running: QEMU's RESUME (on libvirt's cont) is announced first, then STARTED.
        Assert.EndsWith(
            """
            $ virsh event --all --loop
            event 'lifecycle' for domain 'sq': Defined Added
            event 'lifecycle' for domain 'sq': Started Booted
            event 'lifecycle' for domain 'sq': Suspended Paused
            event 'lifecycle' for domain 'sq': Resumed Unpaused
            event 'lifecycle' for domain 'sq': Shutdown Finished after host request
            event 'lifecycle' for domain 'sq': Stopped Destroyed
            event 'lifecycle' for domain 'sq': Resumed Unpaused
            event 'lifecycle' for domain 'sq': Started Booted
            event 'lifecycle' for domain 'sq': Shutdown Finished after host request
            event 'lifecycle' for domain 'sq': Stopped Destroyed
            event 'lifecycle' for domain 'cq': Started Booted
            event 'lifecycle' for domain 'cq': Suspended Paused
            event 'lifecycle' for domain 'cq': Resumed Unpaused
            event 'lifecycle' for domain 'cq': Shutdown Finished after host request
            event 'lifecycle' for domain 'cq': Stopped Destroyed
            event 'lifecycle' for domain 'cq': Resumed Unpaused
            event 'lifecycle' for domain 'cq': Started Booted
            event 'lifecycle' for domain 'cq': Shutdown Finished after host request
            event 'lifecycle' for domain 'cq': Stopped Destroyed
            event 'lifecycle' for domain 'sq': Undefined Removed

            """.ReplaceLineEndings("\n"),
            real,
            StringComparison.Ordinal);
    }

    /// <summary>
    /// The name a client opens is checked as libvirtd checks it: only the QEMU driver, at
    /// /system or /session; any other driver or path is refused at open, with libvirt's words.
    /// (libvirtd also hosts libvirt's mock driver, <c>test:///default</c>, which Tidemark does
    /// not: it answers that name as any other unknown driver.)
    /// </summary>
    [Fact]
    public async Task ConnectionNames_AreAcceptedAndRefusedAsOnLibvirtd()
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tdn");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);

        string[] names = ["qemu+unix:///system", "qemu+unix:///session", "qemu+unix:///foo", "bogus+unix:///system"];
        async Task<string> TranscriptAsync(string socket)
        {
            var text = new System.Text.StringBuilder();
            foreach (var name in names)
            {
                var r = await Peer.RunAsync("virsh", ["-c", $"{name}?socket={socket}", "domstate", "nosuch"]);
                text.Append($"$ {name}\n{r.Stdout}{r.Stderr}[exit {r.ExitCode}]\n").Replace(socket, "SOCKET");
            }

            return text.ToString();
        }

        var real = await TranscriptAsync(libvirtd.SocketPath);
        var ours = await TranscriptAsync(daemon.SocketPath);
        Assert.Equal(real, ours);
        Assert.Contains("error: no connection driver available for bogus:///system\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unexpected qemu URI path '/foo', try qemu:///system\n", real, StringComparison.Ordinal);
    }

    /// <summary>
    /// The events a backup raises, as a libvirt-python client with an event loop receives them:
    /// the job's JOB_COMPLETED, then its (one) disk's block job ending (BLOCK_JOB by source path,
    /// BLOCK_JOB_2 by target, type 5 BACKUP): a completed push's as completed, an aborted pull's
    /// as cancelled.
    /// </summary>
    [Fact]
    public async Task BackupEvents_AreTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tde", RunEventsAsync, Ct);

        Assert.Equal(real, ours);
        Assert.Equal(
            """
            job-completed success True
            block-job DIR/ev/vda.qcow2 type 5 status 0
            block-job-2 vda type 5 status 0
            job-completed success True
            block-job DIR/ev/vda.qcow2 type 5 status 2
            block-job-2 vda type 5 status 2

            """,
            real);
    }

    private static async Task<string> RunSuspendAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var xml = await TwoDiskDomain.CreateAsync(directory, "sp");
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "sp");
        await virsh.RunAsync("suspend", "sp");
        await virsh.RunAsync("suspend", "sp");
        await virsh.RunAsync("domstate", "sp", "--reason");
        await virsh.RunAsync("dominfo", "sp");
        await virsh.RunAsync("list");
        await virsh.RunAsync("list", "--state-paused");
        await virsh.RunAsync("list", "--state-running", "--name");
        await virsh.RunAsync("list", "--all", "--state-paused", "--state-shutoff", "--name");
        await virsh.RunAsync("checkpoint-create-as", "sp", "k1");
        await virsh.RunAsync("checkpoint-list", "sp", "--name");
        await virsh.RunAsync("domstate", "sp", "--reason");
        await virsh.RunAsync("resume", "sp");
        await virsh.RunAsync("resume", "sp");
        await virsh.RunAsync("domstate", "sp", "--reason");
        await virsh.RunAsync("list", "--state-running", "--name");
        await virsh.RunAsync("suspend", "sp");
        await virsh.RunAsync("shutdown", "sp");
        await virsh.RunAsync("destroy", "sp");
        await virsh.RunAsync("domstate", "sp", "--reason");
        await virsh.RunAsync("suspend", "sp");
        await virsh.RunAsync("resume", "sp");

        // The lifecycle events of suspend, suspend again, resume, suspend, resume. (Those of
        // start and destroy are compared by StartPaused_PrintsAndAnnouncesTheSameOnBoth.)
        await virsh.RunAsync("start", "sp");
        var script = """
            import sys, libvirt
            libvirt.virEventRegisterDefaultImpl()
            conn = libvirt.open(sys.argv[1])
            dom = conn.lookupByName('sp')
            seen = []
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda c, d, e, detail, o: seen.append((e, detail)), None)
            dom.suspend()
            dom.suspend()
            dom.resume()
            dom.suspend()
            dom.resume()
            while len(seen) < 4:
                libvirt.virEventRunDefaultImpl()
            print('events', seen)
            """;
        var events = await Peer.RunAsync("/usr/bin/python3", ["-c", script, uri], timeout: TimeSpan.FromMinutes(1));
        Assert.True(events.ExitCode == 0, events.Stderr);
        await virsh.RunAsync("destroy", "sp");
        await virsh.RunAsync("undefine", "sp", "--checkpoints-metadata");
        return virsh.Mask(directory) + events.Stdout;
    }

    private static async Task<string> RunStartPausedAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var xml = await TwoDiskDomain.CreateAsync(directory, "sq");
        var transient = await TwoDiskDomain.CreateAsync(directory, "cq");

        // The watcher registers in its own time: define the domain until it reports the
        // definition (undoing each definition it missed, off the record); every later event
        // follows that line. On a busy host the first definition can come before the watcher.
        await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
        const string defined = "event 'lifecycle' for domain 'sq': Defined";
        for (var attempt = 0; ; attempt++)
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "define", xml])).EnsureSuccess();
            if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
            {
                break;
            }

            Assert.True(attempt < 20, "virsh event reported no definition of sq");
            (await Peer.RunAsync("virsh", ["-c", uri, "undefine", "sq"])).EnsureSuccess();
        }

        await virsh.RunAsync("start", "sq", "--paused");
        await virsh.RunAsync("domstate", "sq", "--reason");
        await virsh.RunAsync("list", "--state-paused");
        await virsh.RunAsync("checkpoint-create-as", "sq", "k1");
        await virsh.RunAsync("resume", "sq");
        await virsh.RunAsync("domstate", "sq", "--reason");
        await virsh.RunAsync("destroy", "sq");
        await virsh.RunAsync("start", "sq");
        await virsh.RunAsync("domstate", "sq", "--reason");
        await virsh.RunAsync("destroy", "sq");
        await virsh.RunAsync("create", transient, "--paused");
        await virsh.RunAsync("domstate", "cq", "--reason");
        await virsh.RunAsync("resume", "cq");
        await virsh.RunAsync("domstate", "cq", "--reason");
        await virsh.RunAsync("destroy", "cq");
        await virsh.RunAsync("create", transient);
        await virsh.RunAsync("domstate", "cq", "--reason");
        await virsh.RunAsync("destroy", "cq");
        await virsh.RunAsync("undefine", "sq", "--checkpoints-metadata");

        // The undefinition is the last event: once it is seen, every earlier one is in.
        await events.WaitForLineAsync("event 'lifecycle' for domain 'sq': Undefined");
        await events.KillAsync();
        virsh.Note("virsh event --all --loop", string.Concat(events.LinesFromLast(defined).Select(l => l + "\n")));
        return virsh.Mask(directory);
    }

    private static async Task<string> RunEventsAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var xml = await TwoDiskDomain.CreateAsync(directory, "ev");
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "ev");
        var push = $"<domainbackup><disks><disk name='vda' type='file'><target file='{Path.Combine(directory, "ev", "full.qcow2")}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>";
        var pull = $"<domainbackup mode='pull'><server transport='unix' socket='{Path.Combine(directory, "ev", "nbd.sock")}'/><disks><disk name='vda' type='file'><scratch file='{Path.Combine(directory, "ev", "vda.scratch")}'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>";
        var script = """
            import sys, threading, time, libvirt
            uri, push, pull = sys.argv[1:4]
            libvirt.virEventRegisterDefaultImpl()
            conn = libvirt.open(uri)
            dom = conn.lookupByName('ev')
            seen = []
            done = threading.Semaphore(0)
            def block(c, d, disk, type, status, event):
                seen.append('%s %s type %d status %d' % (event, disk, type, status))
            def completed(c, d, params, opaque):
                seen.append('job-completed success %s' % params.get('success'))
                done.release()
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB, block, 'block-job')
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, block, 'block-job-2')
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, completed, None)
            def loop():
                while True:
                    libvirt.virEventRunDefaultImpl()
            threading.Thread(target=loop, daemon=True).start()
            dom.backupBegin(push, None)
            if not done.acquire(timeout=60): sys.exit('no job-completed for the push')
            dom.backupBegin(pull, None)
            dom.abortJob()
            if not done.acquire(timeout=60): sys.exit('no job-completed for the pull')
            # Block-job events may follow the job's own: wait for stragglers.
            time.sleep(3)
            print('\n'.join(seen))
            """;
        var result = await Peer.RunAsync("/usr/bin/python3", ["-c", script, uri, push, pull], timeout: TimeSpan.FromMinutes(3));
        Assert.True(result.ExitCode == 0, result.Stderr);
        await virsh.RunAsync("destroy", "ev");
        await virsh.RunAsync("undefine", "ev");
        return result.Stdout.Replace(directory, "DIR", StringComparison.Ordinal);
    }

    private static async Task<string> RunBackupAsync(VirshTranscript virsh, string directory)
    {
        var xml = await TwoDiskDomain.CreateAsync(directory, "pb");
        var socket = Path.Combine(directory, "pb", "nbd.sock");
        var full = Path.Combine(directory, "pb", "full.xml");
        await File.WriteAllTextAsync(full, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/><disks><disk name='vda' backup='yes' type='file'><scratch file='{Path.Combine(directory, "pb", "vda.scratch")}'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>", Ct);
        var incremental = Path.Combine(directory, "pb", "inc.xml");
        await File.WriteAllTextAsync(incremental, $"<domainbackup mode='pull'><incremental>b1</incremental><server transport='unix' socket='{socket}'/><disks><disk name='vda' backup='yes' type='file'><scratch file='{Path.Combine(directory, "pb", "vda.scratch")}'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>", Ct);
        var checkpoint = Path.Combine(directory, "pb", "b1.xml");
        await File.WriteAllTextAsync(checkpoint, "<domaincheckpoint><name>b1</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>", Ct);

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "pb");
        await virsh.RunAsync("backup-dumpxml", "pb");
        await virsh.RunAsync("domjobinfo", "pb");
        await virsh.RunAsync("backup-begin", "pb", full, checkpoint);
        await virsh.RunAsync("backup-dumpxml", "pb");
        await virsh.RunAsync("domjobinfo", "pb");
        await virsh.RunAsync("checkpoint-list", "pb", "--name");
        await virsh.RunAsync("domjobabort", "pb");
        await virsh.WaitForNoJobAsync("pb");
        await virsh.RunAsync("domjobinfo", "pb", "--completed");
        await virsh.RunAsync("domjobinfo", "pb");
        await virsh.RunAsync("domjobabort", "pb");
        await virsh.RunAsync("backup-begin", "pb", incremental);
        await virsh.RunAsync("backup-dumpxml", "pb");
        await virsh.RunAsync("domjobabort", "pb");
        await virsh.WaitForNoJobAsync("pb");
        await virsh.RunAsync("checkpoint-list", "pb", "--name");

        // A push target in a directory that does not exist: a system error, no job.
        var nowhere = Path.Combine(directory, "pb", "push-nowhere.xml");
        await File.WriteAllTextAsync(nowhere, $"<domainbackup><disks><disk name='vda' type='file'><target file='{Path.Combine(directory, "pb", "no-such-dir", "vda.qcow2")}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>", Ct);
        await virsh.RunAsync("backup-begin", "pb", nowhere);
        await virsh.RunAsync("domjobinfo", "pb");

        // The domain stops during a pull: the job ends cancelled, not completed (§6.11).
        await virsh.RunAsync("backup-begin", "pb", full);
        await virsh.RunAsync("destroy", "pb");
        await virsh.RunAsync("domjobinfo", "pb", "--completed");
        await virsh.RunAsync("backup-begin", "pb", full);
        await virsh.RunAsync("undefine", "pb", "--checkpoints-metadata");
        return virsh.Mask(directory);
    }

    private static async Task<string> RunAsync(VirshTranscript virsh, string directory, Func<string, Task> guestWrite)
    {
        var xml = await TwoDiskDomain.CreateAsync(directory, "dv");

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("dominfo", "dv");
        await virsh.RunAsync("start", "dv");
        await virsh.RunAsync("domstate", "dv");
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("dominfo", "dv");
        await virsh.RunAsync("domblklist", "dv");
        await virsh.RunAsync("domblklist", "dv", "--details");
        await virsh.RunAsync("list", "--all");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c1", "first");
        await guestWrite("vda");
        await virsh.RunAsync("checkpoint-create-as", "dv", "--name", "c2", "--diskspec", "vda", "--diskspec", "vdb,checkpoint=no");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c3");
        await virsh.RunAsync("checkpoint-list", "dv");
        await virsh.RunAsync("checkpoint-list", "dv", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--parent");
        await virsh.RunAsync("checkpoint-list", "dv", "--tree");
        await virsh.RunAsync("checkpoint-list", "dv", "--roots");
        await virsh.RunAsync("checkpoint-list", "dv", "--leaves", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--no-leaves", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--topological", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--from", "c1", "--name");
        await virsh.RunAsync("checkpoint-list", "dv", "--from", "c1", "--descendants", "--name");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c1", "--no-domain");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c1", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c2", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-info", "dv", "c1");
        await virsh.RunAsync("checkpoint-info", "dv", "c2");
        await virsh.RunAsync("checkpoint-parent", "dv", "c2");
        await virsh.RunAsync("checkpoint-parent", "dv", "c1");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c1");
        await virsh.RunAsync("checkpoint-delete", "dv", "c2");
        await virsh.RunAsync("checkpoint-list", "dv", "--tree");
        await virsh.RunAsync("checkpoint-delete", "dv", "c1", "--children");
        await virsh.RunAsync("checkpoint-list", "dv", "--name");
        await virsh.RunAsync("checkpoint-info", "dv", "c1");
        await virsh.RunAsync("checkpoint-dumpxml", "dv", "c9");
        await virsh.RunAsync("checkpoint-create-as", "dv", "c4");
        await virsh.RunAsync("destroy", "dv");
        await virsh.RunAsync("domstate", "dv", "--reason");
        await virsh.RunAsync("undefine", "dv");
        await virsh.RunAsync("undefine", "dv", "--checkpoints-metadata");
        await virsh.RunAsync("domstate", "dv");

        // A disk image gone: the start fails naming it, and who could not reach it.
        File.Move(Path.Combine(directory, "dv", "vdb.qcow2"), Path.Combine(directory, "dv", "vdb.gone"));
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "dv");
        await virsh.RunAsync("undefine", "dv");
        return virsh.Mask(directory);
    }
}
