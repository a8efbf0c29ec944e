using System.Globalization;
using System.Net.Sockets;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// The daemon, in a child process (Tidemark.Daemon.CrashHost), is SIGKILLed at a random point
/// while two NBD guests write through a running domain's exports (each write flushed, or sent
/// with NBD_CMD_FLAG_FUA and not flushed) and a libvirt-python client drives it: nothing
/// more, checkpoints in a loop, push backups in a loop (full and incremental, each with a
/// checkpoint), or an incremental pull backup. Then the daemon is started again and judged by
/// peers: stock virsh lists the same domain and the checkpoints the client saw created, both
/// images pass <c>qemu-img check</c>, every flushed or FUA-acknowledged write reads back with
/// qemu-io (across the series some FUA write with no flush after it is judged), the
/// interrupted job's files are gone, and virsh's incremental backup from the latest checkpoint (its bitmap was IN_USE at the kill) is refused with libvirt's error.
/// </summary>
/// <remarks>Seeded (<c>TIDEMARK_CRASH_SEED</c> overrides); a failure names the seed and the trial.</remarks>
public sealed class CrashTests
{
    private const int TrialsPerScenario = 8;
    private const long Size = 8 << 20;
    private const string Domain = "k";
    private static readonly string[] Scenarios = ["writes", "checkpoints", "push", "pull"];
    private static readonly string[] Disks = ["vda", "vdb"];

    /// <summary>The client: connects once the daemon listens, defines and starts the domain with checkpoint c0, prints "ready", then runs the scenario.</summary>
    private const string Client = """
        import sys, time, libvirt

        uri, domain_xml, scenario, work = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
        # Started beside the daemon, not after it: connect once it listens.
        for _ in range(600):
            try:
                conn = libvirt.open(uri)
                break
            except libvirt.libvirtError:
                time.sleep(0.05)
        else:
            sys.exit("no daemon at " + uri)
        dom = conn.defineXML(domain_xml)
        dom.create()
        dom.checkpointCreateXML("<domaincheckpoint><name>c0</name></domaincheckpoint>")
        def say(line):
            print(line, flush=True)
        def disks(element, name):
            return "".join("<disk name='%s' type='file'><%s file='%s/%s-%s'/></disk>" % (d, element, work, name, d) for d in ("vda", "vdb"))
        say("ready")
        i = 0
        while scenario == "checkpoints":
            dom.checkpointCreateXML("<domaincheckpoint><name>k%d</name></domaincheckpoint>" % i)
            say("checkpoint k%d" % i)
            i += 1
        while scenario == "push":
            incremental = "<incremental>b%d</incremental>" % (i - 1) if i % 2 else ""
            dom.backupBegin("<domainbackup mode='push'>%s<disks>%s</disks></domainbackup>" % (incremental, disks("target", "b%d" % i)),
                            "<domaincheckpoint><name>b%d</name></domaincheckpoint>" % i)
            say("checkpoint b%d" % i)
            while dom.jobStats().get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                time.sleep(0.005)
            if dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED).get("success") != 1:
                sys.exit("push b%d failed" % i)
            say("done b%d" % i)
            i += 1
        if scenario == "pull":
            dom.backupBegin("<domainbackup mode='pull'><incremental>c0</incremental><server transport='unix' socket='%s/pull.sock'/><disks>%s</disks></domainbackup>"
                            % (work, disks("scratch", "p0")), "<domaincheckpoint><name>p0</name></domaincheckpoint>")
            say("checkpoint p0")
        time.sleep(600)
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledDaemon_Restarted_VirshSeesTheSameState_FlushedAndFuaWritesKept_BrokenBitmapRefused()
    {
        var fuaOnly = 0;
        await CrashTrials.RunAsync(TrialsPerScenario, Scenarios, async t =>
        {
            var (cut, judged) = await RunTrialAsync(t);
            fuaOnly += judged;
            return cut;
        });

        // Some kill came after a FUA write and before any flush: FUA alone had to keep it.
        Assert.True(fuaOnly > 0, "no trial judged a FUA write that no flush followed");
    }

    /// <summary>Runs one trial; true when the kill cut a backup job short, and how many judged writes only FUA made durable.</summary>
    private static async Task<(bool Cut, int FuaOnly)> RunTrialAsync(CrashTrial trial)
    {
        var (scenario, killAfterMs, writeSeed) = (trial.Scenario, trial.Draw("kill after ms", 50, 500), trial.DrawSeed());
        using var directory = new TempDirectory("dk");
        var state = directory.File("state");
        var socket = directory.File("sock");
        var uri = $"qemu+unix:///system?socket={socket}";
        var work = directory.File("work");
        Directory.CreateDirectory(work);

        // The daemon and the client start while the images are made: process start-up is most
        // of a trial's cost. The daemon is killed in the finally below (disposing twice is a no-op).
        await using var daemon = FollowedProcess.Start("dotnet", [DaemonHost, state, socket]);
        var images = Disks.Select(d => directory.File($"{d}.qcow2")).ToArray();
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", images[0], Size.ToString(CultureInfo.InvariantCulture));
        foreach (var image in images.Skip(1))
        {
            File.Copy(images[0], image);
        }

        var domainXml = directory.File("k.xml");
        await File.WriteAllTextAsync(domainXml, TestDaemon.DomainXml(Domain, [.. Disks.Zip(images)]), Ct);
        var script = directory.File("client.py");
        await File.WriteAllTextAsync(script, Client, Ct);

        var writes = new FlushedWrites { FuaWrites = true };
        IReadOnlyList<string> reported;
        IReadOnlyList<string> done;
        await using (var client = FollowedProcess.Start("/usr/bin/python3", [script, uri, domainXml, scenario, work]))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                await daemon.WaitForLineAsync("ready");
                await client.WaitForLineAsync("ready");
                var guest = Path.Combine(state, "run", Domain + ".sock");
                writers = [.. Disks.Select((d, i) => Task.Run(() => writes.WriteAsync(c => ConnectAsync(guest, d, c), d, Size, new Random(writeSeed + i), stop.Token), Ct))];
                if (scenario == "pull")
                {
                    await client.WaitForLineAsync("checkpoint p0");
                }

                await writes.WaitForEveryDiskAsync(Disks, writers, Ct);
                await Task.Delay(killAfterMs, Ct);
                await client.AssertRunningAsync();
            }
            finally
            {
                await stop.CancelAsync();
                await daemon.DisposeAsync();
            }

            await Task.WhenAll(writers);
            reported = client.Lines("checkpoint ");
            done = client.Lines("done ");
        }

        var recordFile = Path.Combine(state, "jobs", Domain + ".files");
        var recorded = File.Exists(recordFile) ? (await File.ReadAllLinesAsync(recordFile, Ct)).Where(l => l.Length > 0).ToArray() : [];
        foreach (var (disk, image) in Disks.Zip(images))
        {
            await writes.AssertKeptAsync(disk, image);
        }

        // The restart: stock virsh judges what the daemon reloaded.
        await using var restarted = await StartDaemonAsync(state, socket);
        Assert.All(recorded, f => Assert.False(File.Exists(f), $"{f} was left by the interrupted job"));
        var left = Directory.GetFileSystemEntries(work).Select(Path.GetFileName).Where(f => !done.Contains(f!.Split('-')[0])).ToList();
        Assert.True(recorded.Length > 0 || scenario == "pull" ? left.Count == 0 : left.Count is 0 or 2, $"unexpected files: {string.Join(", ", left)}");

        // One virsh for three commands: its output is theirs one after the other.
        var shutOff = Domain + "\n\n" + "shut off\n\n";
        var seen = await VirshAsync(uri, $"list --all --name; domstate {Domain}; checkpoint-list {Domain} --name --topological");
        Assert.Equal(shutOff, seen[..Math.Min(shutOff.Length, seen.Length)]);
        var listed = seen[shutOff.Length..].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["c0", .. reported], listed.Take(reported.Count + 1));
        Assert.True(listed.Length <= reported.Count + 2, $"checkpoints nobody created: {string.Join(", ", listed)}");

        await VirshAsync(uri, "start", Domain);
        var last = listed[^1];
        var backupXml = directory.File("refused.xml");
        await File.WriteAllTextAsync(backupXml, $"<domainbackup><incremental>{last}</incremental><disks><disk name='vda' type='file'><target file='{work}/refused-vda'/></disk><disk name='vdb' type='file'><target file='{work}/refused-vdb'/></disk></disks></domainbackup>", Ct);
        var refused = await Peer.RunAsync("virsh", ["-c", uri, "backup-begin", Domain, backupXml], timeout: TimeSpan.FromSeconds(60));
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: checkpoint inconsistent: missing or broken bitmap '{last}' for disk 'vda'\n", refused.Stderr);
        Assert.False(File.Exists(Path.Combine(work, "refused-vda")));
        return (recorded.Length > 0, writes.FuaOnlyJudged);
    }

    private static async Task<string> VirshAsync(string uri, params string[] arguments)
    {
        var r = await Peer.RunAsync("virsh", ["-c", uri, .. arguments], timeout: TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, $"virsh {string.Join(' ', arguments)} exited {r.ExitCode}: {r.Stderr}");
        return r.Stdout;
    }

    private static string DaemonHost => Path.Combine(AppContext.BaseDirectory, "Tidemark.Daemon.CrashHost.dll");

    private static async Task<FollowedProcess> StartDaemonAsync(string state, string socket)
    {
        var daemon = FollowedProcess.Start("dotnet", [DaemonHost, state, socket]);
        await daemon.WaitForLineAsync("ready");
        return daemon;
    }

    private static Task<NbdClient> ConnectAsync(string socket, string disk, CancellationToken cancellationToken)
        => NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = disk }, cancellationToken);
}
