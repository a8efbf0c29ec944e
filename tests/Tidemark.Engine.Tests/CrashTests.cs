using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A child process hosting the engine (Tidemark.Engine.CrashHost) is SIGKILLed at a random
/// point while two NBD guests write and flush through its exports, in four scenarios: guest
/// writes alone, checkpoint creation in a loop, push backups (full and incremental, each with a
/// checkpoint) in a loop, and an incremental pull backup being read. Afterwards: both images
/// pass <c>qemu-img check</c> (leaks allowed, no corruption), every write the guest saw
/// flushed reads back (qemu-io), every checkpoint the child reported is in the reloaded
/// metadata, every bitmap is reported broken (it was IN_USE or never stored) and an incremental
/// from it is refused, and the next start removed what the interrupted job had created
/// (targets, scratch files, the pull socket) while the targets of completed pushes remain.
/// </summary>
/// <remarks>
/// The run is seeded (<c>TIDEMARK_CRASH_SEED</c> overrides the default) and every failure names
/// the seed and the trial. Where the kill lands within a trial depends on timing, so a seed
/// replays the same choices, not necessarily the same kill point.
/// </remarks>
public sealed class CrashTests
{
    private const int TrialsPerScenario = 8;
    private const long Size = 16 << 20;
    private const int Cluster = 64 << 10;
    private const string Domain = "k";
    private static readonly string[] Scenarios = ["writes", "checkpoints", "push", "pull"];
    private static readonly TestDisk[] Disks = [new("vda"), new("vdb")];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledEngine_LeavesCleanImages_FlushedWrites_BrokenBitmapsRefused_NoLeftovers()
    {
        var seed = Environment.GetEnvironmentVariable("TIDEMARK_CRASH_SEED") is { Length: > 0 } s ? int.Parse(s, CultureInfo.InvariantCulture) : 20261130;
        var random = new Random(seed);
        var pushesCut = 0;
        for (var trial = 0; trial < TrialsPerScenario * Scenarios.Length; trial++)
        {
            var scenario = Scenarios[trial % Scenarios.Length];
            var (pauseMs, killAfterMs, writeSeed) = (random.Next(5, 40), random.Next(100, 600), random.Next());
            try
            {
                pushesCut += await RunTrialAsync(scenario, pauseMs, killAfterMs, writeSeed) && scenario == "push" ? 1 : 0;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, trial {trial} ({scenario}, pause {pauseMs} ms, kill after {killAfterMs} ms): {e.Message}", e);
            }
        }

        // The kills did land inside push jobs, not only between them.
        Assert.True(pushesCut > 0, $"seed {seed}: no push trial was killed while a job ran");
    }

    /// <summary>Runs one trial; true when the kill cut a backup job short.</summary>
    private static async Task<bool> RunTrialAsync(string scenario, int pauseMs, int killAfterMs, int writeSeed)
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync(Domain, Size, Disks);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);
        var work = test.Directory.File("work");
        Directory.CreateDirectory(work);

        var output = new ChildOutput();
        var acknowledged = new ConcurrentDictionary<(string Disk, long Offset), int>();
        using (var child = StartChild(test, scenario, pauseMs, work, output))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                var socket = await output.Ready.Task.WaitAsync(TimeSpan.FromSeconds(60), Ct);
                if (socket.Length == 0)
                {
                    Assert.Fail($"the child did not start: {await child.StandardError.ReadToEndAsync(Ct)}");
                }

                writers = [.. Disks.Select((d, i) => Task.Run(() => WriteAsync(socket, d.Target, new Random(writeSeed + i), acknowledged, stop.Token), Ct))];
                if (scenario == "pull")
                {
                    // Kill while the job runs, not before it began.
                    await output.FirstCheckpoint.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
                }

                // Kill once both guests have had a write acknowledged, so every trial judges some.
                var started = Stopwatch.StartNew();
                while (acknowledged.Keys.Select(k => k.Disk).Distinct().Count() < Disks.Length && started.Elapsed < TimeSpan.FromSeconds(30) && !writers.Any(w => w.IsCompleted))
                {
                    await Task.Delay(5, Ct);
                }

                await Task.Delay(killAfterMs, Ct);
                if (child.HasExited)
                {
                    Assert.Fail($"the child ended by itself: {await child.StandardError.ReadToEndAsync(Ct)}");
                }
            }
            finally
            {
                // SIGKILL: no flush, no close, no bitmaps stored, no job ended.
                await stop.CancelAsync();
                child.Kill();
                await child.WaitForExitAsync(Ct);
            }

            // A guest request cut by the kill fails; any failure before it fails the trial.
            await Task.WhenAll(writers);
            await output.Drained;
        }

        var recordFile = Path.Combine(test.StateRoot, "jobs", Domain + ".files");
        var recorded = File.Exists(recordFile) ? await File.ReadAllLinesAsync(recordFile, Ct) : [];
        await AssertImagesCleanAsync(test);
        await AssertAcknowledgedWritesAsync(test, acknowledged);

        // The next start: the interrupted job's files are gone, completed pushes are kept.
        await test.ReopenAfterCrashAsync();
        Assert.All(recorded.Where(f => f.Length > 0), f => Assert.False(File.Exists(f), $"{f} was left by the interrupted job"));
        var done = output.Lines("done ").ToHashSet();
        var left = Directory.GetFileSystemEntries(work).Select(Path.GetFileName).Where(f => !done.Contains(f!.Split('-')[0])).ToList();
        if (recorded.Length > 0 || scenario == "pull")
        {
            Assert.Empty(left);
        }
        else
        {
            // No record: the last push had ended and kept its targets; the kill only beat its "done".
            Assert.True(left.Count is 0 or 2, $"unexpected files: {string.Join(", ", left)}");
        }

        foreach (var target in Directory.GetFiles(work))
        {
            await Peer.RunCheckedAsync("qemu-img", "check", "-q", target);
        }

        domain = test.Host.LookupByName(Domain);
        var reported = output.Lines("checkpoint ");
        var listed = await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct);
        Assert.Equal(["c0", .. reported], listed.Take(reported.Count + 1));
        Assert.Equal(Directory.GetFiles(Path.Combine(test.StateRoot, "checkpoint", Domain), "*.xml").Length, listed.Count);
        await AssertBitmapsReportedBrokenAsync(domain, listed, work);

        // A new checkpoint after the crash is sound, and a push from it runs.
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>after</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.True(domain.Running!.Disks.All(d => d.HasValidBitmap("after")));
        var backup = await domain.BeginBackupAsync(PushXml(work, "again", "after"), null, cancellationToken: Ct);
        Assert.True((await backup.Completion.WaitAsync(TimeSpan.FromSeconds(60), Ct)).Success);
        await domain.DestroyAsync(Ct);
        return recorded.Length > 0;
    }

    private static Process StartChild(TestHost test, string scenario, int pauseMs, string work, ChildOutput output)
    {
        var host = Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashHost.dll");
        var info = new ProcessStartInfo("dotnet", [host, test.StateRoot, Domain, scenario, pauseMs.ToString(CultureInfo.InvariantCulture), work])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var child = Process.Start(info)!;
        output.Follow(child);
        return child;
    }

    /// <summary>One guest: 64 KiB writes (a pattern, or write-zeroes) at random clusters of one disk, each followed by a flush.</summary>
    private static async Task WriteAsync(string socket, string disk, Random random, ConcurrentDictionary<(string, long), int> acknowledged, CancellationToken stop)
    {
        var buffer = new byte[Cluster];
        try
        {
            await using var client = await Guest.ConnectAsync(socket, disk, stop);
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
            // The kill cut the connection (or the test stopped the guest first).
        }
    }

    private static async Task AssertImagesCleanAsync(TestHost test)
    {
        foreach (var disk in Disks)
        {
            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", test.ImagePath(Domain, disk)]);
            Assert.True(check.ExitCode is 0 or 3, $"qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, check.Stdout);
        }
    }

    private static async Task AssertAcknowledgedWritesAsync(TestHost test, ConcurrentDictionary<(string Disk, long Offset), int> acknowledged)
    {
        Assert.NotEmpty(acknowledged);
        foreach (var disk in Disks)
        {
            var reads = acknowledged.Where(a => a.Key.Disk == disk.Target)
                .SelectMany(a => (string[])["-c", string.Create(CultureInfo.InvariantCulture, $"read -P {a.Value} {a.Key.Offset} 64k")]).ToList();
            if (reads.Count > 0)
            {
                var read = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads, test.ImagePath(Domain, disk)]);
                Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal), $"a flushed write was lost on {disk.Target}: {read.Stdout}{read.Stderr}");
            }
        }
    }

    /// <summary>Every bitmap was IN_USE (or never stored) at the kill: redefine-validate reports it, an incremental from it is refused and creates nothing.</summary>
    private static async Task AssertBitmapsReportedBrokenAsync(Domain domain, IReadOnlyList<string> checkpoints, string work)
    {
        await domain.StartAsync(Ct);
        foreach (var name in checkpoints)
        {
            var expected = $"checkpoint inconsistent: missing or broken bitmap '{name}' for disk 'vda'";
            var xml = await domain.Checkpoints.GetXmlAsync(name, cancellationToken: Ct);
            var invalid = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.CreateAsync(xml, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
            Assert.Equal(expected, invalid.Message);
            var refused = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(PushXml(work, "refused", name), null, cancellationToken: Ct));
            Assert.Equal(expected, refused.Message);
        }

        Assert.False(File.Exists(Path.Combine(work, "refused-vda.qcow2")));
        Assert.Null(domain.Backup);
    }

    private static string PushXml(string work, string prefix, string? incremental)
        => $"""
            <domainbackup mode='push'>{(incremental is null ? "" : $"<incremental>{incremental}</incremental>")}<disks>
              <disk name='vda' type='file'><target file='{Path.Combine(work, prefix + "-vda.qcow2")}'/><driver type='qcow2'/></disk>
              <disk name='vdb' type='file'><target file='{Path.Combine(work, prefix + "-vdb.qcow2")}'/><driver type='qcow2'/></disk>
            </disks></domainbackup>
            """;

    /// <summary>The child's stdout, drained all along: a child blocked on a full pipe would stall its scenario.</summary>
    private sealed class ChildOutput
    {
        private readonly List<string> _lines = [];

        public TaskCompletionSource<string> Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource FirstCheckpoint { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Drained { get; private set; } = Task.CompletedTask;

        public void Follow(Process child)
        {
            Drained = Task.Run(async () =>
            {
                while (await child.StandardOutput.ReadLineAsync() is { } line)
                {
                    lock (_lines)
                    {
                        _lines.Add(line);
                    }

                    if (line.StartsWith("ready ", StringComparison.Ordinal))
                    {
                        Ready.TrySetResult(line["ready ".Length..]);
                    }
                    else if (line.StartsWith("checkpoint ", StringComparison.Ordinal))
                    {
                        FirstCheckpoint.TrySetResult();
                    }
                }

                Ready.TrySetResult("");
                FirstCheckpoint.TrySetResult();
            });
        }

        public IReadOnlyList<string> Lines(string prefix)
        {
            lock (_lines)
            {
                return [.. _lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l[prefix.Length..])];
            }
        }
    }
}
