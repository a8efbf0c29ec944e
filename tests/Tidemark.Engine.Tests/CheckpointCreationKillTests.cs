using System.Globalization;
using System.Text.Json;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// SIGKILLs inside checkpoint creation itself. A child process hosting the engine
/// (Tidemark.Engine.CrashHost) creates checkpoints back to back on a four-disk domain, either
/// running (four NBD guests writing and flushing all the while; the bitmaps are added under
/// the domain's barrier, the metadata written) or shut off (the bitmaps stored into the four
/// qcow2 files one after another, then the metadata), and is killed at a drawn delay after its
/// first creation began. After the restart: the checkpoint either exists, with a bitmap on every
/// disk it names whenever its images were closed (a kill while the next open marks them IN_USE
/// leaves them clean or IN_USE, never drops them; redefine-validate passes exactly when every
/// bitmap is there and not IN_USE, and otherwise names the first disk whose bitmap is missing
/// or broken, never a silently wrong one), or it does not exist and no image holds a bitmap of
/// it, a stray one having been removed by the start; <c>qemu-img check</c> finds no corruption;
/// every write a guest saw flushed reads back; the interrupted name can be created again.
/// </summary>
public sealed class CheckpointCreationKillTests
{
    private const int TrialsPerScenario = 20;
    private const long Size = 16 << 20;
    private const string DomainName = "q";
    private static readonly string[] Scenarios = ["checkpoints", "offline"];
    private static readonly TestDisk[] Disks = [new("vda"), new("vdb"), new("vdc"), new("vdd")];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledWhileCreatingACheckpoint_AllOrNothing_NoStrayBitmap_CleanImages_FlushedWritesKept()
    {
        var strays = new List<string>();
        var inside = await CrashTrials.RunAsync(TrialsPerScenario, Scenarios, t => RunTrialAsync(t, strays));
        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"{TrialsPerScenario * Scenarios.Length} kills, {inside} inside a checkpoint creation; stray bitmaps removed at restart (trial:name): {string.Join(", ", strays)}"));

        // The child does little but create checkpoints, so most kills land inside a creation.
        Assert.True(inside >= TrialsPerScenario, $"only {inside} of {TrialsPerScenario * Scenarios.Length} kills landed inside a checkpoint creation");
    }

    /// <summary>Runs one trial; true when the kill landed inside a creation.</summary>
    private static async Task<bool> RunTrialAsync(CrashTrial trial, List<string> strays)
    {
        var running = trial.Scenario == "checkpoints";
        var (killAfterMs, writeSeed) = (trial.Draw("kill after ms", 0, 400), trial.DrawSeed());
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync(DomainName, Size, Disks);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);

        var writes = new FlushedWrites();
        IReadOnlyList<string> reported;
        string? interrupted;
        await using (var child = FollowedProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashHost.dll"), test.StateRoot, DomainName, trial.Scenario, "0", test.Directory.File("work")]))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                var socket = await child.WaitForLineAsync("ready ");
                if (running)
                {
                    writers = [.. Disks.Select((d, i) => Task.Run(() => writes.WriteAsync(c => Guest.ConnectAsync(socket, d.Target, c), d.Target, Size, new Random(writeSeed + i), stop.Token), Ct))];
                    await writes.WaitForEveryDiskAsync([.. Disks.Select(d => d.Target)], writers, Ct);
                }

                await child.WaitForLineAsync("creating ");
                await Task.Delay(killAfterMs, Ct);
                await child.AssertRunningAsync();
            }
            finally
            {
                await stop.CancelAsync();
                await child.KillAsync();
            }

            await Task.WhenAll(writers);
            reported = child.Lines("checkpoint ");
            var begun = child.Lines("creating ");
            interrupted = begun.Count > reported.Count ? begun[^1] : null;
        }

        foreach (var disk in Disks)
        {
            if (running)
            {
                await writes.AssertKeptAsync(disk.Target, test.ImagePath(DomainName, disk));
            }
            else
            {
                await FlushedWrites.AssertNoCorruptionAsync(test.ImagePath(DomainName, disk));
            }
        }

        // Before the restart only the interrupted checkpoint can have bitmaps without metadata.
        var saved = Directory.GetFiles(Path.Combine(test.StateRoot, "checkpoint", DomainName), "*.xml").Select(Path.GetFileNameWithoutExtension).ToHashSet();
        var left = await BitmapsAsync(test);
        var stray = left.Values.SelectMany(b => b.Keys).Where(n => !saved.Contains(n)).Distinct().ToList();
        Assert.All(stray, n => Assert.Equal(interrupted, n));

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName(DomainName);
        var listed = await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct);
        Assert.Equal(["c0", .. reported], listed.Take(reported.Count + 1));
        Assert.True(listed.Count == reported.Count + 1 || (listed.Count == reported.Count + 2 && listed[^1] == interrupted), $"checkpoints after the restart: {string.Join(", ", listed)}");

        // No stray bitmap: every bitmap left is a checkpoint's. Every disk still holds c0's
        // bitmap (clean, or IN_USE when the kill found its image open): marking IN_USE at open
        // switches the header to a new directory in one write, so no kill drops a disk's
        // bitmaps. Offline, every checkpoint has its bitmap on every disk (stored before its
        // metadata was saved).
        var bitmaps = await BitmapsAsync(test);
        foreach (var (target, names) in bitmaps)
        {
            Assert.All(names.Keys, n => Assert.Contains(n, listed));
            Assert.True(names.ContainsKey("c0"), $"disk {target} lost the bitmap of c0; before the restart: {Describe(left)}; after: {Describe(bitmaps)}");
            if (!running)
            {
                Assert.All(listed, c => Assert.True(names.ContainsKey(c), $"checkpoint {c} has no bitmap on disk {target}; before the restart: {Describe(left)}; after: {Describe(bitmaps)}"));
            }
        }

        if (stray.Count > 0)
        {
            strays.Add(string.Create(CultureInfo.InvariantCulture, $"{trial.Number}:{stray[0]}"));
        }

        // Redefine-validate passes exactly when every bitmap is there and not IN_USE.
        await domain.StartAsync(Ct);
        foreach (var name in listed)
        {
            var xml = await domain.Checkpoints.GetXmlAsync(name, cancellationToken: Ct);
            var broken = Disks.FirstOrDefault(d => !(bitmaps[d.Target].TryGetValue(name, out var inUse) && !inUse));
            var validate = domain.Checkpoints.CreateAsync(xml, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);
            if (broken is null)
            {
                Assert.Equal(name, await validate);
            }
            else
            {
                var refused = await Assert.ThrowsAsync<EngineException>(() => validate);
                Assert.Equal($"checkpoint inconsistent: missing or broken bitmap '{name}' for disk '{broken.Target}'", refused.Message);
            }
        }

        // The interrupted name is free again when it did not become a checkpoint.
        var again = interrupted is not null && !listed.Contains(interrupted) ? interrupted : "after";
        Assert.Equal(again, await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>{again}</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.True(domain.Running!.Disks.All(d => d.HasValidBitmap(again)));
        await domain.DestroyAsync(Ct);
        foreach (var disk in Disks)
        {
            await FlushedWrites.AssertNoCorruptionAsync(test.ImagePath(DomainName, disk));
        }

        return interrupted is not null;
    }

    private static string Describe(Dictionary<string, Dictionary<string, bool>> bitmaps)
        => string.Join("; ", bitmaps.Select(d => $"{d.Key}: {string.Join(" ", d.Value.Select(b => b.Value ? b.Key + "(in-use)" : b.Key))}"));

    /// <summary>Each disk's bitmaps as qemu-img reads them: name → IN_USE.</summary>
    private static async Task<Dictionary<string, Dictionary<string, bool>>> BitmapsAsync(TestHost test)
    {
        var result = new Dictionary<string, Dictionary<string, bool>>();
        foreach (var disk in Disks)
        {
            using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", test.ImagePath(DomainName, disk)));
            var names = new Dictionary<string, bool>();
            if (info.RootElement.GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out var list))
            {
                foreach (var bitmap in list.EnumerateArray())
                {
                    names[bitmap.GetProperty("name").GetString()!] = bitmap.GetProperty("flags").EnumerateArray().Any(f => f.GetString() == "in-use");
                }
            }

            result[disk.Target] = names;
        }

        return result;
    }
}
