using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// An administrator's commands while a pull backup runs, on the real libvirtd (QEMU) and on
/// Tidemark's daemon, compared through stock virsh (spec §6.7 step 2: while a backup's async
/// job runs, libvirt still lets MODIFY, SUSPEND, QUERY, DESTROY and ABORT jobs through).
/// </summary>
public sealed class BackupConcurrencyDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "bj";

    private const string ReadsTheInstant = "12M +1M reads as at the instant\n";
    private const string ReadsNow = "12M +1M reads as written since\n";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// With a full pull job running (it runs until <c>domjobabort</c>), and then with an
    /// incremental pull from the checkpoint the first job created: a second backup-begin (a pull
    /// during the first job, a push during the second: libvirt waits 30 s for the domain's job,
    /// then times out); checkpoints created, listed, sized, deleted (the running incremental's
    /// base and another) and one redefined; suspend, domjobinfo while paused, resume; undefine without and with
    /// <c>--checkpoints-metadata</c> and the definition back; domjobabort twice, shutdown, and
    /// domjobinfo <c>--completed</c> after each kind of end. Afterwards an incremental from the
    /// checkpoint created during the first job, whose dirty map (<c>nbdinfo --map</c>) holds
    /// exactly the writes made after it, through both jobs.
    /// </summary>
    [Fact]
    public async Task CommandsDuringAPullBackup_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdj", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What libvirt says, so that a change on its side fails here too.
        const string timedOut = "error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)\n[exit 1]\n";
        Assert.Equal(2, real.Split(timedOut).Length - 1);
        Assert.Contains("$ virsh checkpoint-create-as bj c1\nDomain checkpoint c1 created\n[exit 0]\n", real, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='1048576'/>", real, StringComparison.Ordinal);

        // A pull keeps the whole disk as it was, written outside the incremental's dirty set too.
        Assert.Contains("Temporary disk space use: 1.500 MiB\n", real, StringComparison.Ordinal);
        Assert.Contains(ReadsTheInstant, real, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-delete bj j1\nDomain checkpoint j1 deleted\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domjobinfo bj\nJob type:         Unbounded   \nOperation:        Backup      \nTime elapsed:     MS ms\nTemporary disk space use: 2.000 MiB\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh undefine bj\nDomain 'bj' has been undefined\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: cannot undefine transient domain\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domjobabort bj\n\n[stderr]\nerror: Requested operation is not valid: no job is active on the domain\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domjobinfo bj --completed\nJob type:         Cancelled   \nOperation:        Backup      \n\n[exit 0]\n$ virsh domjobabort bj\n\n[stderr]\nerror: Requested operation is not valid: domain is not running\n", real, StringComparison.Ordinal);
        Assert.Contains(
            """
            $ nbdinfo --map=qemu:dirty-bitmap:backup-vda
                     0     4718592    0  clean
               4718592      524288    1  dirty
               5242880     3145728    0  clean
               8388608     1048576    1  dirty
               9437184     3145728    0  clean
              12582912     1048576    1  dirty
              13631488     3145728    0  clean
            [exit 0]

            """.ReplaceLineEndings("\n"),
            real,
            StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        var xml = await TwoDiskDomain.CreateAsync(directory, Domain);
        var images = Path.Combine(directory, Domain);
        var socket = Path.Combine(images, "nbd.sock");
        string Doc(string name, string text)
        {
            var path = Path.Combine(images, name);
            File.WriteAllText(path, text);
            return path;
        }

        string Pull(string? incremental) =>
            $"<domainbackup mode='pull'>{(incremental is null ? "" : $"<incremental>{incremental}</incremental>")}<server transport='unix' socket='{socket}'/><disks><disk name='vda' backup='yes' type='file'><scratch file='{Path.Combine(images, "vda.scratch")}'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>";
        var full = Doc("full.xml", Pull(null));
        var fromJ1 = Doc("inc-j1.xml", Pull("j1"));
        var fromC1 = Doc("inc-c1.xml", Pull("c1"));
        var push = Doc("push.xml", $"<domainbackup><disks><disk name='vda' type='file'><target file='{Path.Combine(images, "push.qcow2")}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        var j1 = Doc("j1.xml", "<domaincheckpoint><name>j1</name></domaincheckpoint>");
        var j2 = Doc("j2.xml", "<domaincheckpoint><name>j2</name></domaincheckpoint>");

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", Domain);

        // The definition back after an undefine: the same domain (its uuid), or the running
        // one is another's ("domain 'bj' already exists with uuid").
        var uuid = (await Peer.RunCheckedAsync("virsh", "-c", uri, "domuuid", Domain)).Trim();
        var again = Doc("again.xml", File.ReadAllText(xml).Replace($"<name>{Domain}</name>", $"<name>{Domain}</name><uuid>{uuid}</uuid>", StringComparison.Ordinal));
        await write(Domain, "vda", "write -P 0x41 0 16M");
        await virsh.RunAsync("checkpoint-create-as", Domain, "c0");

        // A full pull, with checkpoint j1 taken at its instant. c1 is taken between two guest
        // writes: its bitmap must hold the second and not the first.
        await virsh.RunAsync("backup-begin", Domain, full, j1);

        // A second begin waits 30 s for the running job, then times out: one pull here, one
        // push during the incremental below (each costs the wait on both hosts).
        await virsh.RunAsync("backup-begin", Domain, full);
        await write(Domain, "vda", "write -P 0x42 4M 1M");
        await virsh.RunAsync("checkpoint-create-as", Domain, "c1");
        await write(Domain, "vda", "write -P 0x43 8M 1M");
        await virsh.RunAsync("checkpoint-list", Domain, "--tree");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c0", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "j1", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c1", "--no-domain", "--size");
        // c0 is no job's base: deleted (bitmaps and all) and redefined, it has no size left.
        var c0 = Doc("c0.xml", (await virsh.RunAsync("checkpoint-dumpxml", Domain, "c0", "--no-domain")).Stdout);
        await virsh.RunAsync("checkpoint-delete", Domain, "c0");
        await virsh.RunAsync("checkpoint-create", Domain, c0, "--redefine");
        await virsh.RunAsync("checkpoint-list", Domain, "--parent", "--name");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c0", "--no-domain", "--size");
        await virsh.RunAsync("suspend", Domain);
        await virsh.RunAsync("domjobinfo", Domain);
        await virsh.RunAsync("domstate", Domain, "--reason");
        await virsh.RunAsync("resume", Domain);

        // A running domain undefined becomes transient, checkpoints kept; defined again, it is
        // persistent again with the job still running.
        await virsh.RunAsync("undefine", Domain);
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");
        await virsh.RunAsync("checkpoint-list", Domain, "--name");
        await virsh.RunAsync("define", again);
        await virsh.RunAsync("domjobinfo", Domain);
        await virsh.RunAsync("backup-dumpxml", Domain);

        // An aborted pull ends completed (spec §6.11); the second abort finds no job.
        await virsh.RunAsync("domjobabort", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        await virsh.RunAsync("domjobabort", Domain);
        await virsh.RunAsync("domjobinfo", Domain, "--completed");
        await virsh.RunAsync("domjobinfo", Domain, "--completed");

        // An incremental pull from j1, with checkpoint j2.
        await virsh.RunAsync("backup-begin", Domain, fromJ1, j2);
        // One write in the job's dirty set (j1's, since 4M and 8M were written), one outside it.
        await write(Domain, "vda", "write -P 0x44 4608K 512K");
        await write(Domain, "vda", "write -P 0x45 12M 1M");
        await virsh.RunAsync("backup-begin", Domain, push);
        // The running incremental's base goes: the job has its dirty set already.
        await virsh.RunAsync("checkpoint-create-as", Domain, "c2");
        await virsh.RunAsync("checkpoint-delete", Domain, "j1");
        await virsh.RunAsync("checkpoint-delete", Domain, "c2");
        await virsh.RunAsync("checkpoint-list", Domain, "--tree");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "j2", "--no-domain", "--size");
        await virsh.RunAsync("suspend", Domain);
        await virsh.RunAsync("domjobinfo", Domain);

        // What the export shows where the guest wrote outside the dirty set: the instant still.
        var read = await Peer.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x41 12M 1M", $"nbd+unix:///vda?socket={socket}"]);
        var differs = read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal);
        Assert.True(read.ExitCode == 0 || differs, read.Stdout + read.Stderr);
        virsh.Note("qemu-io -c 'read -P 0x41 12M 1M' (the export)", differs ? ReadsNow : ReadsTheInstant);
        await virsh.RunAsync("resume", Domain);
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");
        await virsh.RunAsync("checkpoint-list", Domain, "--name");
        await virsh.RunAsync("define", again);
        await virsh.RunAsync("backup-dumpxml", Domain);

        // The domain stops under the job: it ends cancelled, and there is nothing to abort.
        await virsh.RunAsync("shutdown", Domain);
        await PlayTheGuestsShutdownAsync(uri);
        await virsh.RunAsync("domstate", Domain);
        await virsh.RunAsync("domjobinfo", Domain, "--completed");
        await virsh.RunAsync("domjobabort", Domain);
        await virsh.RunAsync("checkpoint-list", Domain, "--tree");

        // After the jobs: an incremental from c1, created while the first job ran.
        await virsh.RunAsync("start", Domain);
        await virsh.RunAsync("backup-begin", Domain, fromC1);
        var map = await Peer.RunAsync("nbdinfo", ["--map=qemu:dirty-bitmap:backup-vda", $"nbd+unix:///vda?socket={socket}"]);
        virsh.Note("nbdinfo --map=qemu:dirty-bitmap:backup-vda", map.Stdout + map.Stderr + $"[exit {map.ExitCode}]\n");
        await virsh.RunAsync("domjobabort", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        await virsh.RunAsync("domjobinfo", Domain, "--completed");
        await virsh.RunAsync("destroy", Domain);
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");
        return virsh.Mask(directory);
    }

    /// <summary>
    /// The guest's part in a shutdown, off the record: libvirt asks the guest (ACPI power
    /// button, qemuDomainShutdownFlags) and the domain stops when the guest has shut itself
    /// down; the guest here runs no operating system, so it never does, and the test stops it
    /// in its place. Tidemark's guests have no shutdown of their own to wait for: its shutdown
    /// stops the domain at once (Domain.ShutdownAsync), as libvirt's does once a guest obeys.
    /// </summary>
    private static async Task PlayTheGuestsShutdownAsync(string uri)
    {
        if ((await Peer.RunAsync("virsh", ["-c", uri, "domstate", Domain])).Stdout.StartsWith("running", StringComparison.Ordinal))
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "destroy", Domain])).EnsureSuccess();
        }
    }
}
