using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Push backups (spec §6.7, §6.10, §6.11): stock virsh runs one sequence of push backups
/// against the real libvirtd (QEMU writing the targets) and against Tidemark's daemon, each
/// with an equivalent domain of three disks (qcow2; raw; qcow2 over a qcow2 backing file). The
/// transcripts, the events and each target as qemu-img describes it must be equal once what
/// must differ between two hosts is masked, and each target must read as the other host's.
/// </summary>
/// <remarks>
/// Left out on purpose: <c>domjobinfo</c> and <c>backup-dumpxml</c> while a push runs. QEMU
/// copies these 16 MiB disks in a few milliseconds and nothing holds its job without timing
/// games; the running job's document and statistics are compared in the pull test, whose job
/// runs until aborted.
/// </remarks>
public sealed partial class PushBackupDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "pu";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PushBackups_PrintAndWriteTheSameOnBoth()
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tdp");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);

        var real = await RunAsync(libvirtd.Uri, libvirtd.Directory.Path, tidemark: false, async (disk, command) =>
            await libvirtd.GuestWriteAsync(Domain, disk, command));
        var ours = await RunAsync($"qemu+unix:///system?socket={daemon.SocketPath}", tidemarkDir.Path, tidemark: true, async (disk, command) =>
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", command, "-c", "flush", $"nbd+unix:///{disk}?socket={Path.Combine(tidemarkDir.File("state"), "run", Domain + ".sock")}"));

        var differences = new List<string>();
        foreach (var (mine, theirs) in real.Targets.Zip(ours.Targets))
        {
            if (await mine.CompareAsync(theirs) is { } difference)
            {
                differences.Add(difference);
            }
        }

        Assert.Equal(real.Transcript, ours.Transcript);
        Assert.Equal(real.Images, ours.Images);
        Assert.Empty(differences);
    }

    private sealed record Run(string Transcript, string Images, IReadOnlyList<PushTarget> Targets);

    private static async Task<Run> RunAsync(string uri, string directory, bool tidemark, Func<string, string, Task> guestWrite)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, Domain);
        var xml = await CreateDomainAsync(images);
        string Doc(string name, string text)
        {
            var path = Path.Combine(images, name);
            File.WriteAllText(path, text.Replace("D/", images + "/", StringComparison.Ordinal));
            return path;
        }

        var full = Doc("full.xml", """
            <domainbackup><disks>
              <disk name='vda' type='file'><target file='D/b1-vda.qcow2'/></disk>
              <disk name='vdb' type='file'><target file='D/b1-vdb.qcow2'/></disk>
              <disk name='vdc' type='file'><target file='D/b1-vdc.qcow2'/></disk>
            </disks></domainbackup>
            """);
        var rawFull = Doc("raw-full.xml", """
            <domainbackup><disks>
              <disk name='vda' type='file'><driver type='raw'/><target file='D/b2-vda.raw'/></disk>
              <disk name='vdb' type='file'><driver type='raw'/><target file='D/b2-vdb.raw'/></disk>
              <disk name='vdc' type='file'><driver type='raw'/><target file='D/b2-vdc.raw'/></disk>
            </disks></domainbackup>
            """);
        var c1 = Doc("c1.xml", "<domaincheckpoint><name>c1</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/><disk name='vdc'/></disks></domaincheckpoint>");
        var c1AllDisks = Doc("c1-all.xml", "<domaincheckpoint><name>c1</name></domaincheckpoint>");
        var incremental = Doc("inc.xml", """
            <domainbackup><incremental>c1</incremental><disks>
              <disk name='vda' type='file'><target file='D/b3-vda.qcow2'/></disk>
              <disk name='vdb' backup='no'/>
              <disk name='vdc' type='file' backupmode='full'><target file='D/b3-vdc.qcow2'/></disk>
            </disks></domainbackup>
            """);
        var c2 = Doc("c2.xml", "<domaincheckpoint><name>c2</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/><disk name='vdc'/></disks></domaincheckpoint>");
        var incrementalMixed = Doc("inc2.xml", """
            <domainbackup><incremental>c2</incremental><disks>
              <disk name='vda' type='file'><driver type='raw'/><target file='D/b4-vda.raw'/></disk>
              <disk name='vdc' type='file'><target file='D/b4-vdc.qcow2'/></disk>
            </disks></domainbackup>
            """);
        var exists = Doc("exists.xml", """
            <domainbackup><disks>
              <disk name='vda' type='file'><target file='D/b1-vda.qcow2'/></disk>
              <disk name='vdb' backup='no'/><disk name='vdc' backup='no'/>
            </disks></domainbackup>
            """);
        var reused = Doc("reuse.xml", """
            <domainbackup><disks>
              <disk name='vda' type='file'><target file='D/b6-vda.qcow2'/></disk>
              <disk name='vdb' type='file'><driver type='raw'/><target file='D/b6-vdb.raw'/></disk>
              <disk name='vdc' backup='no'/>
            </disks></domainbackup>
            """);
        var nowhere = Doc("nowhere.xml", """
            <domainbackup><disks>
              <disk name='vda' type='file'><target file='D/no-such-dir/vda.qcow2'/></disk>
            </disks></domainbackup>
            """);

        async Task BackupAsync(params string[] arguments)
        {
            var begun = await virsh.RunAsync(["backup-begin", Domain, .. arguments]);
            if (begun.ExitCode == 0)
            {
                await virsh.WaitForNoJobAsync(Domain);
                await virsh.RunAsync("domjobinfo", Domain, "--completed");
            }
        }

        // The watcher registers in its own time: define the domain until it reports the
        // definition (undoing each definition it missed, off the record), so that it sees every
        // event of the backups below even on a busy host.
        await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
        var defined = $"event 'lifecycle' for domain '{Domain}': Defined";
        for (var attempt = 0; ; attempt++)
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "define", xml])).EnsureSuccess();
            if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
            {
                break;
            }

            Assert.True(attempt < 20, $"virsh event reported no definition of {Domain}");
            (await Peer.RunAsync("virsh", ["-c", uri, "undefine", Domain])).EnsureSuccess();
        }

        await virsh.RunAsync("start", Domain);

        await BackupAsync(full);
        await BackupAsync(rawFull, c1AllDisks);
        await BackupAsync(rawFull, c1);
        await guestWrite("vda", "write -P 0x51 2M 64k");
        await guestWrite("vda", "write -P 0x52 12M 4k");
        await guestWrite("vda", "write -z 0 64k");
        await guestWrite("vdb", "write -P 0x53 8M 64k");
        await guestWrite("vdc", "write -P 0x54 3M 64k");
        await guestWrite("vdc", "write -z 12M 64k");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c1", "--no-domain", "--size");
        await BackupAsync(incremental, c2);
        await guestWrite("vda", "write -P 0x61 5M 128k");
        await guestWrite("vdc", "write -P 0x62 6M 64k");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c1", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-dumpxml", Domain, "c2", "--no-domain", "--size");
        await BackupAsync(incrementalMixed);
        await BackupAsync(exists);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", Path.Combine(images, "b6-vda.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", Path.Combine(images, "b6-vdb.raw"), "16M");
        await BackupAsync(reused);
        await BackupAsync(reused, "--reuse-external");
        await BackupAsync(nowhere);
        await virsh.RunAsync("checkpoint-list", Domain, "--name");

        // The domain's end is the last event: once it is seen, every backup's events are in.
        await virsh.RunAsync("destroy", Domain);
        await events.WaitForLineAsync($"event 'lifecycle' for domain '{Domain}': Stopped");
        await events.KillAsync();
        virsh.Note("virsh event --all --loop", BackupEvents(events.LinesFromLast(defined)));
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");

        PushTarget[] targets =
        [
            new(Path.Combine(images, "b1-vda.qcow2"), "qcow2"),
            new(Path.Combine(images, "b1-vdb.qcow2"), "qcow2"),
            new(Path.Combine(images, "b1-vdc.qcow2"), "qcow2"),
            new(Path.Combine(images, "b2-vda.raw"), "raw"),
            new(Path.Combine(images, "b2-vdb.raw"), "raw"),
            new(Path.Combine(images, "b2-vdc.raw"), "raw"),
            new(Path.Combine(images, "b3-vda.qcow2"), "qcow2"),
            new(Path.Combine(images, "b3-vdc.qcow2"), "qcow2"),
            new(Path.Combine(images, "b4-vda.raw"), "raw"),
            new(Path.Combine(images, "b4-vdc.qcow2"), "qcow2"),
            new(Path.Combine(images, "b6-vda.qcow2"), "qcow2"),
            new(Path.Combine(images, "b6-vdb.raw"), "raw"),
        ];
        var described = new System.Text.StringBuilder();
        foreach (var target in targets)
        {
            described.Append(await target.DescribeAsync(directory, asQemuWroteIt: !tidemark));
        }

        var leftovers = string.Join("\n", Directory.GetFiles(images).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        virsh.Note("ls", leftovers + "\n");
        return new Run(virsh.Mask(directory), described.ToString(), targets);
    }

    /// <summary>
    /// The events as virsh printed them, with the one thing a host does not decide masked:
    /// the order in which a job's disks end. Each disk's block job runs on its own (QEMU's
    /// jobs, Tidemark's copiers), so which disk ends first is a race on both; what is kept is
    /// each job's sequence of events (the disks ended before the job's JOB_COMPLETED, the last
    /// one's BLOCK_JOB and BLOCK_JOB_2 after it, as qemuBackupNotifyBlockjobEnd terminates the
    /// job before the block job's own events go out), its statistics but the elapsed time, and
    /// the set of disks that ended, sorted.
    /// </summary>
    private static string BackupEvents(IReadOnlyList<string> lines)
    {
        var text = new System.Text.StringBuilder();
        var disks = new List<string>();
        var tail = -1;
        foreach (var line in lines)
        {
            if (line.StartsWith("event 'block-job", StringComparison.Ordinal))
            {
                disks.Add(line);
                text.Append(BlockJobDisk().Replace(line, "Backup for DISK ")).Append('\n');
                if (tail > 0 && --tail == 0)
                {
                    disks.Sort(StringComparer.Ordinal);
                    text.AppendJoin("", disks.Select(d => "  ended: " + d + "\n"));
                    disks.Clear();
                    tail = -1;
                }

                continue;
            }

            if (line.StartsWith("event 'job-completed'", StringComparison.Ordinal))
            {
                tail = 2;
            }

            text.Append(line.StartsWith("\ttime_elapsed: ", StringComparison.Ordinal) ? "\ttime_elapsed: MS" : line).Append('\n');
        }

        text.AppendJoin("", disks.Select(d => "  left: " + d + "\n"));
        return text.ToString();
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"Backup for \S+ ")]
    private static partial System.Text.RegularExpressions.Regex BlockJobDisk();

    /// <summary>
    /// The domain's images, written before it starts (so both hosts' are alike byte for byte):
    /// vda qcow2 with data at the start and a 4 KiB piece in the middle, the rest unallocated;
    /// vdb raw, sparse but for one MiB; vdc a qcow2 overlay with 32 KiB clusters over a qcow2
    /// base, data in both.
    /// </summary>
    private static async Task<string> CreateDomainAsync(string images)
    {
        Directory.CreateDirectory(images);
        var vda = Path.Combine(images, "vda.qcow2");
        var vdb = Path.Combine(images, "vdb.raw");
        var vdcBase = Path.Combine(images, "vdc-base.qcow2");
        var vdc = Path.Combine(images, "vdc.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vda, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 1M", "-c", "write -P 0x42 9M 4k", vda);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", vdb, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x43 2M 1M", vdb);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vdcBase, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 0 4M", "-c", "write -P 0x45 12M 1M", vdcBase);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=32k", "-b", vdcBase, "-F", "qcow2", vdc);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x46 1M 1M", vdc);

        var xml = Path.Combine(images, Domain + ".xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>{Domain}</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os>
                <type arch='x86_64' machine='pc'>hvm</type>
              </os>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source file='{vda}'/>
                  <target dev='vda' bus='virtio'/>
                  <alias name='ua-vda'/>
                </disk>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='raw'/>
                  <source file='{vdb}'/>
                  <target dev='vdb' bus='virtio'/>
                  <alias name='ua-vdb'/>
                </disk>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source file='{vdc}'/>
                  <target dev='vdc' bus='virtio'/>
                  <alias name='ua-vdc'/>
                </disk>
              </devices>
            </domain>
            """, Ct);
        return xml;
    }
}
