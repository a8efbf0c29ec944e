using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// The daemon, in a child process (Tidemark.Daemon.CrashHost), is SIGKILLed at a random point
/// while two NBD guests write and flush through a running domain's exports and a libvirt-python
/// client drives it: nothing more, checkpoints in a loop, push backups in a loop (full and
/// incremental, each with a checkpoint), or an incremental pull backup. Then the daemon is
/// started again and judged by peers: stock virsh lists the same domain and the checkpoints
/// the client saw created, both images pass <c>qemu-img check</c>, every flushed write reads
/// back with qemu-io, the interrupted job's files are gone, and virsh's incremental backup from
/// the latest checkpoint (its bitmap was IN_USE at the kill) is refused with libvirt's error.
/// </summary>
/// <remarks>Seeded (<c>TIDEMARK_CRASH_SEED</c> overrides); a failure names the seed and the trial.</remarks>
public sealed class CrashTests
{
    private const int TrialsPerScenario = 5;
    private const long Size = 8 << 20;
    private const int Cluster = 64 << 10;
    private const string Domain = "k";
    private static readonly string[] Scenarios = ["writes", "checkpoints", "push", "pull"];
    private static readonly string[] Disks = ["vda", "vdb"];

    /// <summary>The client: defines and starts the domain with checkpoint c0, prints "ready", then runs the scenario.</summary>
    private const string Client = """
        import sys, time, libvirt

        uri, domain_xml, scenario, work = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
        conn = libvirt.open(uri)
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
    public async Task KilledDaemon_Restarted_VirshSeesTheSameState_FlushedWritesKept_BrokenBitmapRefused()
    {
        var seed = Environment.GetEnvironmentVariable("TIDEMARK_CRASH_SEED") is { Length: > 0 } s ? int.Parse(s, CultureInfo.InvariantCulture) : 20261130;
        var random = new Random(seed);
        var pushesCut = 0;
        for (var trial = 0; trial < TrialsPerScenario * Scenarios.Length; trial++)
        {
            var scenario = Scenarios[trial % Scenarios.Length];
            var (killAfterMs, writeSeed) = (random.Next(50, 500), random.Next());
            try
            {
                pushesCut += await RunTrialAsync(scenario, killAfterMs, writeSeed) && scenario == "push" ? 1 : 0;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, trial {trial} ({scenario}, kill after {killAfterMs} ms): {e.Message}", e);
            }
        }

        // The kills did land inside push jobs, not only between them.
        Assert.True(pushesCut > 0, $"seed {seed}: no push trial was killed while a job ran");
    }

    /// <summary>Runs one trial; true when the kill cut a backup job short.</summary>
    private static async Task<bool> RunTrialAsync(string scenario, int killAfterMs, int writeSeed)
    {
        using var directory = new TempDirectory("dk");
        var state = directory.File("state");
        var socket = directory.File("sock");
        var uri = $"qemu+unix:///system?socket={socket}";
        var work = directory.File("work");
        Directory.CreateDirectory(work);
        var images = Disks.Select(d => directory.File($"{d}.qcow2")).ToArray();
        foreach (var image in images)
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, Size.ToString(CultureInfo.InvariantCulture));
        }

        var domainXml = directory.File("k.xml");
        await File.WriteAllTextAsync(domainXml, TestDaemon.DomainXml(Domain, [.. Disks.Zip(images)]), Ct);
        var script = directory.File("client.py");
        await File.WriteAllTextAsync(script, Client, Ct);

        var acknowledged = new ConcurrentDictionary<(string Disk, long Offset), int>();
        var daemon = await ChildProcess.StartAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tidemark.Daemon.CrashHost.dll"), state, socket]);
        IReadOnlyList<string> reported;
        IReadOnlyList<string> done;
        await using (var client = await ChildProcess.StartAsync("/usr/bin/python3", [script, uri, domainXml, scenario, work]))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                await client.WaitForLineAsync("ready");
                var guest = Path.Combine(state, "run", Domain + ".sock");
                writers = [.. Disks.Select((d, i) => Task.Run(() => WriteAsync(guest, d, new Random(writeSeed + i), acknowledged, stop.Token), Ct))];
                if (scenario == "pull")
                {
                    await client.WaitForLineAsync("checkpoint p0");
                }

                var started = Stopwatch.StartNew();
                while (acknowledged.Keys.Select(k => k.Disk).Distinct().Count() < Disks.Length && started.Elapsed < TimeSpan.FromSeconds(30) && !writers.Any(w => w.IsCompleted))
                {
                    await Task.Delay(5, Ct);
                }

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
            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
            Assert.True(check.ExitCode is 0 or 3, $"qemu-img check {disk} exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, check.Stdout);
            var reads = acknowledged.Where(a => a.Key.Disk == disk)
                .SelectMany(a => (string[])["-c", string.Create(CultureInfo.InvariantCulture, $"read -P {a.Value} {a.Key.Offset} 64k")]).ToList();
            Assert.NotEmpty(reads);
            var read = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads, image]);
            Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal), $"a flushed write was lost on {disk}: {read.Stdout}{read.Stderr}");
        }

        // The restart: stock virsh judges what the daemon reloaded.
        await using var restarted = await ChildProcess.StartAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tidemark.Daemon.CrashHost.dll"), state, socket]);
        Assert.All(recorded, f => Assert.False(File.Exists(f), $"{f} was left by the interrupted job"));
        var left = Directory.GetFileSystemEntries(work).Select(Path.GetFileName).Where(f => !done.Contains(f!.Split('-')[0])).ToList();
        Assert.True(recorded.Length > 0 || scenario == "pull" ? left.Count == 0 : left.Count is 0 or 2, $"unexpected files: {string.Join(", ", left)}");
        Assert.Equal(Domain + "\n\n", await VirshAsync(uri, "list", "--all", "--name"));
        Assert.Equal("shut off\n\n", await VirshAsync(uri, "domstate", Domain));
        var listed = (await VirshAsync(uri, "checkpoint-list", Domain, "--name", "--topological")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
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
        return recorded.Length > 0;
    }

    private static async Task<string> VirshAsync(string uri, params string[] arguments)
    {
        var r = await Peer.RunAsync("virsh", ["-c", uri, .. arguments], timeout: TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, $"virsh {string.Join(' ', arguments)} exited {r.ExitCode}: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>One guest: 64 KiB writes (a pattern, or write-zeroes) at random clusters of one disk, each followed by a flush.</summary>
    private static async Task WriteAsync(string socket, string disk, Random random, ConcurrentDictionary<(string, long), int> acknowledged, CancellationToken stop)
    {
        var buffer = new byte[Cluster];
        try
        {
            await using var client = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = disk }, stop);
            while (!stop.IsCancellationRequested)
            {
                var offset = (long)random.Next((int)(Size / Cluster)) * Cluster;
                var pattern = random.Next(256);

                // In flight, the cluster holds the old or the new bytes (or a mix); flushed, the new.
                acknowledged.TryRemove((disk, offset), out _);
                if (pattern == 0)
                {
                    await client.WriteZeroesAsync(offset, Cluster, cancellationToken: stop);
                }
                else
                {
                    buffer.AsSpan().Fill((byte)pattern);
                    await client.WriteAsync(offset, buffer, cancellationToken: stop);
                }

                await client.FlushAsync(stop);
                acknowledged[(disk, offset)] = pattern;
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
            // The kill cut the connection.
        }
    }

    /// <summary>A child process whose stdout is followed line by line (drained all along) and which is SIGKILLed when disposed.</summary>
    private sealed class ChildProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly Task<string> _stderr;
        private readonly Task _stdout;
        private readonly SemaphoreSlim _changed = new(0);

        private ChildProcess(Process process)
        {
            _process = process;
            _stderr = process.StandardError.ReadToEndAsync();
            _stdout = Task.Run(async () =>
            {
                while (await process.StandardOutput.ReadLineAsync() is { } line)
                {
                    lock (_lines)
                    {
                        _lines.Add(line);
                    }

                    _changed.Release();
                }

                _changed.Release();
            });
        }

        public static async Task<ChildProcess> StartAsync(string program, string[] arguments)
        {
            var child = new ChildProcess(Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!);
            if (program == "dotnet")
            {
                await child.WaitForLineAsync("ready");
            }

            return child;
        }

        public async Task WaitForLineAsync(string line)
        {
            var deadline = Stopwatch.StartNew();
            while (!Lines("").Contains(line))
            {
                if (_stdout.IsCompleted || deadline.Elapsed > TimeSpan.FromSeconds(60))
                {
                    Assert.Fail($"no '{line}' from {_process.StartInfo.FileName}: {string.Join('\n', Lines(""))}\n{await _stderr.WaitAsync(TimeSpan.FromSeconds(5), Ct)}");
                }

                await _changed.WaitAsync(TimeSpan.FromSeconds(1), Ct);
            }
        }

        public async Task AssertRunningAsync()
        {
            if (_process.HasExited)
            {
                Assert.Fail($"{_process.StartInfo.FileName} ended by itself: {await _stderr}");
            }
        }

        public IReadOnlyList<string> Lines(string prefix)
        {
            lock (_lines)
            {
                return [.. _lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l[prefix.Length..])];
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync(Ct);
            await _stdout;
            _process.Dispose();
            _changed.Dispose();
        }
    }
}
