using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A child process hosting the engine is SIGKILLed at a random point while qemu-io guests write
/// through its exports and it creates checkpoints in a loop. Afterwards: both images pass
/// <c>qemu-img check</c> (leaks allowed, no corruption), every write qemu-io saw flushed reads
/// back, every checkpoint the child reported is in the reloaded metadata, and every
/// checkpoint's bitmap is reported broken (it was IN_USE or never stored), never used.
/// </summary>
public sealed class CrashTests
{
    private const int Trials = 6;
    private const long Size = 16 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledEngine_LeavesCleanImages_FlushedWrites_AndBrokenBitmapsReported()
    {
        var random = new Random(20261130);
        for (var trial = 0; trial < Trials; trial++)
        {
            await RunTrialAsync(trial, random.Next(10, 80), random.Next(200, 1500));
        }
    }

    private static async Task RunTrialAsync(int trial, int pauseMs, int killAfterMs)
    {
        await using var test = await TestHost.CreateAsync();
        TestDisk[] disks = [new("vda"), new("vdb")];
        var domain = await test.DefineAsync("k", Size, disks);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);

        var host = Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashHost.dll");
        var info = new ProcessStartInfo("dotnet", [host, test.StateRoot, "k", pauseMs.ToString(CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var child = Process.Start(info)!;

        // Drained all along: a child blocked on a full stdout pipe would stall its checkpoints.
        var lines = new List<string>();
        var ready = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = Task.Run(
            async () =>
            {
                while (await child.StandardOutput.ReadLineAsync() is { } line)
                {
                    lock (lines)
                    {
                        lines.Add(line);
                    }

                    if (line.StartsWith("ready ", StringComparison.Ordinal))
                    {
                        ready.TrySetResult(line["ready ".Length..]);
                    }
                }

                ready.TrySetResult("");
            },
            Ct);
        var stderr = child.StandardError.ReadToEndAsync(Ct);
        var acknowledged = new List<(string Disk, long Offset, int Pattern)>();
        try
        {
            var socket = await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), Ct);
            if (socket.Length == 0)
            {
                Assert.Fail($"trial {trial}: the child did not start: {await stderr}");
            }

            var deadline = Stopwatch.StartNew();
            for (var j = 0; deadline.ElapsedMilliseconds < killAfterMs; j++)
            {
                var disk = disks[j % 2].Target;
                var offset = (long)(j / 2) * (64 << 10) % Size;
                var pattern = (j % 250) + 1;
                var result = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", $"write -P {pattern} {offset} 64k", "-c", "flush", Guest.Uri(socket, disk)], timeout: TimeSpan.FromSeconds(30));
                Assert.True(result.ExitCode == 0 && !(result.Stdout + result.Stderr).Contains("failed", StringComparison.OrdinalIgnoreCase), $"trial {trial}: a guest write failed before the kill: {result.Stdout}{result.Stderr}");
                acknowledged.RemoveAll(a => a.Disk == disk && a.Offset == offset);
                acknowledged.Add((disk, offset, pattern));
            }
        }
        finally
        {
            // SIGKILL: no flush, no close, no bitmaps stored.
            child.Kill();
            await child.WaitForExitAsync(Ct);
        }

        await reader;
        List<string> reported;
        lock (lines)
        {
            reported = [.. lines.Where(l => l.StartsWith("checkpoint ", StringComparison.Ordinal)).Select(l => l["checkpoint ".Length..])];
        }

        foreach (var disk in disks)
        {
            var image = test.ImagePath("k", disk);
            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
            Assert.True(check.ExitCode is 0 or 3, $"trial {trial}: qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, $"trial {trial}: {check.Stdout}");

            var reads = acknowledged.Where(a => a.Disk == disk.Target).SelectMany(a => (string[])["-c", $"read -P {a.Pattern} {a.Offset} 64k"]).ToList();
            if (reads.Count > 0)
            {
                var read = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads, image]);
                Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal), $"trial {trial}: a flushed write was lost on {disk.Target}: {read.Stdout}{read.Stderr}");
            }
        }

        // The next start: every checkpoint the child reported is there, none with a usable bitmap.
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("k");
        var listed = await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct);
        Assert.Equal(["c0", .. reported], listed.Take(reported.Count + 1));
        Assert.Equal(Directory.GetFiles(Path.Combine(test.StateRoot, "checkpoint", "k"), "*.xml").Length, listed.Count);

        await domain.StartAsync(Ct);
        foreach (var name in listed)
        {
            var xml = await domain.Checkpoints.GetXmlAsync(name, cancellationToken: Ct);
            var error = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.CreateAsync(xml, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
            Assert.Equal($"checkpoint inconsistent: missing or broken bitmap '{name}' for disk 'vda'", error.Message);
        }

        // A new checkpoint after the crash is sound.
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>after</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.True(domain.Running!.Disks.All(d => d.HasValidBitmap("after")));
        await domain.DestroyAsync(Ct);
    }
}
