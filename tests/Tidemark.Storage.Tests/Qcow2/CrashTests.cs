using System.Diagnostics;
using System.Text.Json;
using Tidemark.Storage.CrashWriter;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// A child process writes through Tidemark and is killed with SIGKILL at random points. After
/// every kill: qemu-img check finds no corruption (leaks are allowed), and every operation a
/// completed flush covered reads back through QEMU, and the enabled bitmap the writer was
/// recording into is reported inconsistent (IN_USE), by qemu-img info and by Tidemark — never
/// silently incomplete.
/// </summary>
public sealed class CrashTests
{
    /// <summary>Kills per case; the three cases make 60 kills in the suite.</summary>
    private const int KillsPerCase = 20;

    [Theory]
    [InlineData(65536, 1, 3)]
    [InlineData(4096, 2, 1)]
    [InlineData(512, 3, 7)]
    public async Task KilledWriter_LeavesCleanImage_AndFlushedWritesReadBack(int clusterSize, int seed, int opsPerFlush)
    {
        using var dir = new TempDirectory();
        var path = dir.File("crash.qcow2");
        const long Size = 8 << 20;
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", path, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var random = new Random(seed);

        // Each round continues the same image with a new workload seed, so later rounds crash
        // into an image that already holds data, freed clusters and grown tables.
        var expected = await ImageContent.QemuReadAllAsync(path, dir);
        for (var round = 0; round < KillsPerCase; round++)
        {
            var workloadSeed = (seed * 1000) + round;

            // A fresh, consistent, enabled bitmap for every round (QEMU runs the operations left to right).
            await Peer.RunCheckedAsync("qemu-img", round == 0 ? ["bitmap", "--add", path, "b0"] : ["bitmap", "--remove", "--add", path, "b0"]);
            var (flushed, started) = await RunAndKillAsync(path, workloadSeed, opsPerFlush, random.Next(0, 120));

            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", path]);
            Assert.True(check.ExitCode is 0 or 3, $"round {round}: qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            var json = JsonDocument.Parse(check.Stdout).RootElement;
            Assert.False(json.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, $"round {round}: {check.Stdout}{check.Stderr}");

            var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", path)).RootElement;
            var bitmap = info.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").EnumerateArray().Single();
            Assert.Equal("b0", bitmap.GetProperty("name").GetString());
            Assert.Equal(["in-use", "auto"], bitmap.GetProperty("flags").EnumerateArray().Select(f => f.GetString()).Order().Reverse().ToArray());
            await using (var reopened = await Tidemark.Storage.Qcow2.Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken))
            {
                Assert.True(reopened.Bitmaps.Get("b0").Inconsistent, $"round {round}: b0 must load as inconsistent after a crash");
            }

            // Flushed operations are applied to the expectation; the unflushed ones that may have
            // started leave their sectors undetermined.
            var workload = new CrashWorkload(workloadSeed, Size);
            var undetermined = new bool[Size / CrashWorkload.Sector];
            for (var i = 0; i < started; i++)
            {
                var op = workload[i];
                if (i < flushed)
                {
                    expected.AsSpan((int)op.Offset, op.Length).Fill(op.Zero ? (byte)0 : op.Fill);
                }
                else
                {
                    undetermined.AsSpan((int)(op.Offset / CrashWorkload.Sector), op.Length / CrashWorkload.Sector).Fill(true);
                }
            }

            var actual = await ImageContent.QemuReadAllAsync(path, dir);
            for (var s = 0; s < undetermined.Length; s++)
            {
                var range = new Range(s * CrashWorkload.Sector, (s + 1) * CrashWorkload.Sector);
                if (undetermined[s])
                {
                    // Whatever is there now is what later rounds build on.
                    actual.AsSpan(range).CopyTo(expected.AsSpan(range));
                    continue;
                }

                Assert.True(expected.AsSpan(range).SequenceEqual(actual.AsSpan(range)), $"round {round} (seed {workloadSeed}, {flushed} flushed of {started}): sector {s} differs from the flushed content");
            }
        }
    }

    /// <summary>Runs the child until it has flushed at least once, waits, kills it; returns (ops flushed, ops possibly started).</summary>
    private static async Task<(int Flushed, int Started)> RunAndKillAsync(string path, int seed, int opsPerFlush, int delayMs)
    {
        var writer = Path.Combine(AppContext.BaseDirectory, "Tidemark.Storage.CrashWriter.dll");
        var info = new ProcessStartInfo("dotnet", [writer, path, seed.ToString(System.Globalization.CultureInfo.InvariantCulture), opsPerFlush.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info)!;
        var flushed = 0;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var line = await process.StandardOutput.ReadLineAsync(timeout.Token);
            if (line is null)
            {
                Assert.Fail("the writer exited before its first flush: " + await process.StandardError.ReadToEndAsync(timeout.Token));
            }

            flushed = Parse(line);
            await Task.Delay(delayMs);
        }
        finally
        {
            // SIGKILL: no finalizers, no close, no flush.
            process.Kill();
            await process.WaitForExitAsync();
        }

        // Lines the child printed before it died still count: each is a completed flush.
        var rest = await process.StandardOutput.ReadToEndAsync();
        foreach (var l in rest.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            flushed = Math.Max(flushed, Parse(l));
        }

        // At most one flush interval (plus the operation in flight) can have started after the last "flushed" line.
        return (flushed, flushed + opsPerFlush + 1);
    }

    private static int Parse(string line) => int.Parse(line["flushed ".Length..], System.Globalization.CultureInfo.InvariantCulture);
}
