using Tidemark.Backup.Prune;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Backup.Verify;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// <c>backup prune</c> and <c>backup merge</c>: the backups before the new oldest one are folded
/// into it and their files go; every remaining point still restores to what qemu-img captured
/// at it, qemu-img check finds every remaining file clean, verify passes, and the chain goes on
/// with an incremental. A fold stopped after any of its durable steps leaves every backup whose
/// manifest remains restorable, and the next command finishes it.
/// </summary>
public sealed class PruneTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task PruneKeepTwoOfFour_RemainingPointsRestore_ChainGoesOn()
    {
        await using var host = await BackupHost.StartAsync(("vda", "32M"));
        var (points, captures) = await BackupsAsync(host, ["vda"], 4);

        var lines = new List<string>();
        var results = await ChainFold.PruneAsync(host.Repository, null, keep: 2, lines.Add, Ct);
        var result = Assert.Single(results);
        Assert.Equal(points[2].Checkpoint, result.NewBase);
        Assert.Equal([points[0].Checkpoint, points[1].Checkpoint], result.Dropped);
        Assert.Equal([points[2].Disks.Single().File], result.Folded);
        Assert.Contains($"domain 'dom': 2 backup(s) folded into {points[2].Checkpoint}, now the oldest", lines);

        var manifests = await host.Repository.ReadManifestsAsync("dom", Ct);
        Assert.Equal([points[2].Checkpoint, points[3].Checkpoint], manifests.Select(m => m.Checkpoint));
        var baseDisk = manifests[0].Disks.Single();
        Assert.Equal(BackupLevel.Full, baseDisk.Level);
        Assert.Null(baseDisk.BackingFile);
        Assert.Null(manifests[0].Parent);
        Assert.False(File.Exists(host.Repository.PathOf("dom", points[0].Disks.Single().File)));
        Assert.False(File.Exists(host.Repository.PathOf("dom", points[1].Disks.Single().File)));
        Assert.False(File.Exists(host.Repository.ManifestPath("dom", points[1].Checkpoint)));
        Assert.False(File.Exists(host.Repository.DomainXmlPath("dom", points[1].Checkpoint)));
        Assert.False(File.Exists(Path.Combine(host.Repository.DomainDirectory("dom"), ChainFold.PendingFileName)));

        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--backing-chain", host.Repository.PathOf("dom", points[3].Disks.Single().File));
        Assert.Contains($"backing file: {points[2].Checkpoint}.qcow2", info, StringComparison.Ordinal);
        Assert.DoesNotContain($"{points[1].Checkpoint}.qcow2", info, StringComparison.Ordinal);
        captures.Remove(points[0].Checkpoint);
        captures.Remove(points[1].Checkpoint);
        await AssertRestorableAsync(host, captures);
        await AssertVerifiedAsync(host, 2);

        // The host's checkpoint base is untouched: the next backup is an incremental on the folded chain.
        await host.GuestWriteAsync("vda", "write -P 0x99 12M 256k");
        var capture = await host.CaptureAsync("vda", "p4-vda.raw");
        var next = await host.BackupAsync(LevelRequest.Incremental);
        Assert.Equal(256L << 10, next.Disks.Single().DataBytes);
        captures[next.Checkpoint] = new Dictionary<string, string> { ["vda"] = capture };
        await AssertRestorableAsync(host, captures);
    }

    [Fact]
    public async Task MergeUntil_DiskMissingFromTheNewBase_FoldsItsNextBackup()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"), ("vdb", "16M"));
        var (points, captures) = await BackupsAsync(host, ["vda", "vdb"], 2);

        // vdb left out of the third backup: its first backup from the new base on is the fourth.
        await host.GuestWriteAsync("vda", "write -P 0x51 5M 1M");
        captures["x"] = new Dictionary<string, string> { ["vda"] = await host.CaptureAsync("vda", "p2-vda.raw") };
        var third = await BackupRunner.RunAsync(host.Options() with { Disks = ["vda"] }, Ct);
        captures[third.Checkpoint] = captures["x"];
        captures.Remove("x");
        await host.GuestWriteAsync("vdb", "write -P 0x52 9M 1M");
        var fourth = await host.BackupAsync(LevelRequest.Incremental);
        captures[fourth.Checkpoint] = new Dictionary<string, string> { ["vda"] = await host.CaptureAsync("vda", "p3-vda.raw"), ["vdb"] = await host.CaptureAsync("vdb", "p3-vdb.raw") };

        var result = await ChainFold.MergeAsync(host.Repository, "dom", third.Checkpoint, null, Ct);
        Assert.Equal([points[0].Checkpoint, points[1].Checkpoint], result.Dropped);
        Assert.Equal([third.Disk("vda")!.File, fourth.Disk("vdb")!.File], result.Folded.Order(StringComparer.Ordinal));
        var manifests = await host.Repository.ReadManifestsAsync("dom", Ct);
        Assert.Equal(BackupLevel.Incremental, manifests[1].Disk("vda")!.Level);
        Assert.Equal(BackupLevel.Full, manifests[1].Disk("vdb")!.Level);
        foreach (var point in points)
        {
            captures.Remove(point.Checkpoint);
        }

        await AssertRestorableAsync(host, captures);
        await AssertVerifiedAsync(host, 2);

        var missing = await Assert.ThrowsAsync<BackupException>(() => ChainFold.MergeAsync(host.Repository, "dom", points[0].Checkpoint, null, Ct));
        Assert.Equal(BackupErrorReason.NotFound, missing.Reason);
    }

    /// <summary>
    /// The fold of a compressed chain stopped after each durable step in turn (on a copy of the
    /// repository each time): before the next command, every backup whose manifest remains
    /// restores to its capture; the next command (a prune, or verify, which takes the lock for
    /// it) finishes the fold, says so, and verify passes.
    /// </summary>
    [Theory]
    [InlineData("prune")]
    [InlineData("verify")]
    public async Task FoldStoppedAfterEachStep_EveryRemainingPointRestores_NextCommandFinishes(string next)
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        var (points, captures) = await BackupsAsync(host, ["vda"], 3, compress: true);
        foreach (var step in Enum.GetValues<FoldStep>())
        {
            var copy = new BackupRepository(host.Directory.File($"repo-{step}"));
            await Peer.RunCheckedAsync("cp", "-a", host.Repository.Root, copy.Root);
            var stopped = await Assert.ThrowsAsync<InvalidOperationException>(() => ChainFold.MergeAsync(copy, "dom", points[2].Checkpoint, null, s =>
            {
                if (s == step)
                {
                    throw new InvalidOperationException($"stopped after {s}");
                }
            }, Ct));
            Assert.Equal($"stopped after {step}", stopped.Message);
            var left = await copy.ReadManifestsAsync("dom", Ct);
            await AssertRestorableAsync(host, copy, captures.Where(c => left.Any(m => m.Checkpoint == c.Key)).ToDictionary());

            var lines = new List<string>();
            if (next == "prune")
            {
                Assert.Empty(await ChainFold.PruneAsync(copy, "dom", keep: 5, lines.Add, Ct));
            }
            else
            {
                // A writer holding the lock may be running the fold itself: verify waits for no one.
                using (RepositoryLock.Acquire(copy.Root))
                {
                    var locked = await Assert.ThrowsAsync<BackupException>(() => RepositoryVerifier.RunAsync(copy, null, null, lines.Add, Ct));
                    Assert.Equal(BackupErrorReason.RepositoryLocked, locked.Reason);
                }

                var finishing = await RepositoryVerifier.RunAsync(copy, null, null, lines.Add, Ct);
                Assert.True(finishing.Passed, $"{step}: " + string.Join('\n', finishing.Findings));
                Assert.Equal(["dom"], finishing.FinishedFolds);
                Assert.Equal(1, finishing.Backups);
                Assert.False(ChainFold.IsPending(copy, "dom"), $"{step}: the pending fold record is left after verify");
            }

            Assert.Contains($"finishing the fold of domain 'dom' into {points[2].Checkpoint} that an interrupted command left", lines);
            Assert.Contains($"domain 'dom': 2 backup(s) folded into {points[2].Checkpoint}, now the oldest", lines);
            var manifests = await copy.ReadManifestsAsync("dom", Ct);
            Assert.Equal(points[2].Checkpoint, Assert.Single(manifests).Checkpoint);
            Assert.Equal(BackupLevel.Full, manifests[0].Disks.Single().Level);
            Assert.Equal("zstd", (await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", copy.PathOf("dom", manifests[0].Disks.Single().File))).Contains("\"compression-type\": \"zstd\"", StringComparison.Ordinal) ? "zstd" : "none");
            await AssertRestorableAsync(host, copy, captures.Where(c => c.Key == points[2].Checkpoint).ToDictionary());
            var verify = await RepositoryVerifier.RunAsync(copy, null, null, Ct);
            Assert.True(verify.Passed, $"{step}: " + string.Join('\n', verify.Findings));
            Assert.Empty(verify.FinishedFolds);
            Assert.Equal([manifests[0].Disks.Single().File], Directory.GetFiles(copy.PathOf("dom", "vda")).Select(f => "vda/" + Path.GetFileName(f)));
        }
    }

    /// <summary><paramref name="count"/> backups (a full, then incrementals), the guest writing before each; the captures by checkpoint and disk.</summary>
    private static async Task<(List<BackupManifest> Points, Dictionary<string, Dictionary<string, string>> Captures)> BackupsAsync(BackupHost host, string[] disks, int count, bool compress = false)
    {
        var points = new List<BackupManifest>();
        var captures = new Dictionary<string, Dictionary<string, string>>();
        for (var i = 0; i < count; i++)
        {
            var capture = new Dictionary<string, string>();
            foreach (var disk in disks)
            {
                // Each point overwrites part of the last one's data, zeroes some and adds more.
                await host.GuestWriteAsync(disk, $"write -P 0x{0x10 + i:x2} {i}M 2M", $"write -z {i + 6}M 64k", $"write -P 0x{0x40 + i:x2} {i + 8}M 512k");
                capture[disk] = await host.CaptureAsync(disk, $"p{i}-{disk}.raw");
            }

            var point = await BackupRunner.RunAsync(host.Options(i == 0 ? LevelRequest.Full : LevelRequest.Incremental) with { Compress = compress }, Ct);
            points.Add(point);
            captures[point.Checkpoint] = capture;
        }

        return (points, captures);
    }

    private static Task AssertRestorableAsync(BackupHost host, Dictionary<string, Dictionary<string, string>> captures) =>
        AssertRestorableAsync(host, host.Repository, captures);

    /// <summary>Every backup in <paramref name="captures"/> restores to its capture, and every chain file of it is clean for qemu-img check.</summary>
    private static async Task AssertRestorableAsync(BackupHost host, BackupRepository repository, Dictionary<string, Dictionary<string, string>> captures)
    {
        foreach (var (checkpoint, disks) in captures)
        {
            var output = host.Directory.File($"restore-{Guid.NewGuid():N}");
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = repository, Domain = "dom", Checkpoint = checkpoint, Output = output + "/" }, Ct);
            Assert.Equal(disks.Keys.Order(StringComparer.Ordinal), restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            foreach (var disk in restored)
            {
                var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", disk.Path, disks[disk.Disk]]);
                Assert.True(compare.ExitCode == 0, $"{checkpoint} {disk.Disk}: {compare.Stdout}{compare.Stderr}");
            }

            var (manifest, _) = await repository.FindAsync("dom", checkpoint, Ct);
            foreach (var disk in manifest.Disks)
            {
                var check = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", repository.PathOf("dom", disk.File)]);
                Assert.True(check.ExitCode == 0, $"{disk.File}: {check.Stdout}{check.Stderr}");
            }

            Directory.Delete(output, recursive: true);
        }
    }

    private static async Task AssertVerifiedAsync(BackupHost host, int backups)
    {
        var verify = await RepositoryVerifier.RunAsync(host.Repository, null, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
        Assert.Equal(backups, verify.Backups);
    }
}
