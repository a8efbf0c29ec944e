using Tidemark.Backup;
using Tidemark.Backup.Prune;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Verify;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A repository's upkeep against a real libvirtd 9.0 and QEMU 7.2: <c>backup prune --keep N</c>
/// and <c>backup merge --until</c> fold the oldest backups of chains QEMU's bitmaps wrote, every
/// remaining point still restores to what qemu-img captured at it (and its chain file, opened by
/// qemu-img, equals it), and the chain goes on with an incremental from QEMU; <c>restore
/// --define</c> defines the restored domain on the libvirtd, whose <c>virsh dumpxml</c> names
/// the restored files, and QEMU starts it on them.
/// </summary>
public sealed class BackupUpkeepTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PruneKeepFourThenMergeUntil_RemainingPointsRestore_ChainGoesOn()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkfold", disks: 2);
        var points = new List<BackupManifest>();
        var captures = new Dictionary<string, IReadOnlyDictionary<string, string>>();
        for (var i = 0; i < 5; i++)
        {
            // Each point overwrites part of the last one's data, zeroes some and adds more.
            await guest.WriteAsync("vda", $"write -P 0x{0x10 + i:x2} {i}M 2M", $"write -z {i + 8}M 64k");
            await guest.WriteAsync("vdb", $"write -P 0x{0x20 + i:x2} {2 * i}M 1M");
            var capture = await guest.CaptureAsync($"p{i}");
            var point = await guest.BackupAsync(LevelRequest.Auto, []);
            points.Add(point);
            captures[point.Checkpoint] = capture;
        }

        Assert.All(points.Skip(1).SelectMany(p => p.Disks), d => Assert.Equal(BackupLevel.Incremental, d.Level));
        var lines = new List<string>();
        var pruned = Assert.Single(await ChainFold.PruneAsync(guest.Repository, guest.Name, keep: 4, lines.Add, Ct));
        Assert.Equal(points[1].Checkpoint, pruned.NewBase);
        Assert.Equal([points[0].Checkpoint], pruned.Dropped);
        Assert.Equal([points[1].Disk("vda")!.File, points[1].Disk("vdb")!.File], pruned.Folded.Order(StringComparer.Ordinal));
        captures.Remove(points[0].Checkpoint);
        await AssertRestorableAsync(guest, captures);

        var merged = await ChainFold.MergeAsync(guest.Repository, guest.Name, points[3].Checkpoint, lines.Add, Ct);
        Assert.Equal([points[1].Checkpoint, points[2].Checkpoint], merged.Dropped);
        Assert.Contains($"domain '{guest.Name}': 2 backup(s) folded into {points[3].Checkpoint}, now the oldest", lines);
        captures.Remove(points[1].Checkpoint);
        captures.Remove(points[2].Checkpoint);
        var manifests = await guest.Repository.ReadManifestsAsync(guest.Name, Ct);
        Assert.Equal([points[3].Checkpoint, points[4].Checkpoint], manifests.Select(m => m.Checkpoint));
        Assert.All(manifests[0].Disks, d => Assert.Equal(BackupLevel.Full, d.Level));
        Assert.Equal([points[3].Checkpoint + ".qcow2", points[4].Checkpoint + ".qcow2"], Directory.GetFiles(guest.Repository.PathOf(guest.Name, "vda")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        await AssertRestorableAsync(guest, captures);

        // The host's checkpoint is untouched by the folds: QEMU's bitmap continues the folded chain.
        await guest.AssertHostCleanAsync([points[4].Checkpoint]);
        await guest.WriteAsync("vda", "write -P 0x7f 20M 64k");
        var last = await guest.CaptureAsync("p5");
        var next = await guest.BackupAsync(LevelRequest.Incremental, []);
        Assert.Equal(64L << 10, next.Disk("vda")!.DataBytes);
        Assert.Equal(0, next.Disk("vdb")!.DataBytes);
        captures[next.Checkpoint] = last;
        await AssertRestorableAsync(guest, captures);
        var verify = await RepositoryVerifier.RunAsync(guest.Repository, guest.Name, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
        Assert.Equal(3, verify.Backups);
    }

    [Fact]
    public async Task RestoreDefine_DumpxmlNamesTheRestoredFiles_AndTheDomainStartsOnThem()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkdef", disks: 2);
        await guest.WriteAsync("vda", "write -P 0x41 0 1M");
        await guest.WriteAsync("vdb", "write -P 0x42 3M 1M");
        await guest.BackupAsync(LevelRequest.Auto, []);
        await guest.WriteAsync("vda", "write -P 0x43 8M 64k");
        var capture = await guest.CaptureAsync("p1");
        await guest.BackupAsync(LevelRequest.Auto, []);

        // The backup's own name is the running original's: refused before anything is written.
        var taken = libvirtd.File($"{guest.Name}-refused");
        var refused = await Assert.ThrowsAsync<BackupException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Output = taken, DefineUri = libvirtd.Uri }, Ct));
        Assert.Equal(BackupErrorReason.OutputExists, refused.Reason);
        Assert.False(Directory.Exists(taken));

        var output = libvirtd.File($"{guest.Name}-restored");
        var copy = guest.Name + "-copy";
        var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Output = output, Format = ImageFormat.Qcow2, DefineUri = libvirtd.Uri, DefineName = copy }, Ct);
        Assert.Equal(["vda", "vdb"], restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
        foreach (var disk in restored)
        {
            await BackupGuest.AssertIdenticalAsync("qcow2", disk.Path, capture[disk.Disk]);
        }

        var xml = await libvirtd.VirshOkAsync("dumpxml", copy);
        foreach (var disk in restored)
        {
            Assert.Equal(Path.Combine(output, disk.Disk + ".qcow2"), disk.Path);
            Assert.Contains($"<source file='{disk.Path}'/>", xml, StringComparison.Ordinal);
        }

        Assert.DoesNotContain($"{guest.Name}-vda.qcow2", xml, StringComparison.Ordinal);
        Assert.NotEqual(await libvirtd.VirshOkAsync("domuuid", guest.Name), await libvirtd.VirshOkAsync("domuuid", copy));
        Assert.Contains("shut off", await libvirtd.VirshOkAsync("domstate", copy), StringComparison.Ordinal);

        // QEMU opens the restored files; the original keeps running on its own.
        await libvirtd.VirshOkAsync("start", copy, "--paused");
        try
        {
            Assert.Contains("paused", await libvirtd.VirshOkAsync("domstate", copy), StringComparison.Ordinal);
            var nodes = await libvirtd.VirshOkAsync("qemu-monitor-command", copy, "{\"execute\":\"query-named-block-nodes\"}");
            foreach (var disk in restored)
            {
                Assert.Contains($"\"{disk.Path}\"", nodes, StringComparison.Ordinal);
            }

            Assert.Contains("paused", await libvirtd.VirshOkAsync("domstate", guest.Name), StringComparison.Ordinal);
        }
        finally
        {
            await libvirtd.VirshOkAsync("destroy", copy);
        }

        foreach (var disk in restored)
        {
            await BackupGuest.AssertIdenticalAsync("qcow2", disk.Path, capture[disk.Disk]);
        }
    }

    /// <summary>Every backup in <paramref name="captures"/> restores to its capture; its chain files equal it too and qemu-img check finds them clean.</summary>
    private static async Task AssertRestorableAsync(BackupGuest guest, Dictionary<string, IReadOnlyDictionary<string, string>> captures)
    {
        foreach (var (checkpoint, disks) in captures)
        {
            var output = Path.Combine(Path.GetDirectoryName(guest.Repository.Root)!, $"{guest.Name}-r-{Guid.NewGuid():N}");
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Checkpoint = checkpoint, Output = output + "/" }, Ct);
            Assert.Equal(disks.Keys.Order(StringComparer.Ordinal), restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            var (manifest, _) = await guest.Repository.FindAsync(guest.Name, checkpoint, Ct);
            foreach (var disk in restored)
            {
                await BackupGuest.AssertIdenticalAsync("raw", disk.Path, disks[disk.Disk]);
                var chainFile = guest.Repository.PathOf(guest.Name, manifest.Disk(disk.Disk)!.File);
                await BackupGuest.AssertIdenticalAsync("qcow2", chainFile, disks[disk.Disk]);
                var check = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", chainFile]);
                Assert.True(check.ExitCode == 0, $"{chainFile}: {check.Stdout}{check.Stderr}");
            }

            Directory.Delete(output, recursive: true);
        }
    }
}
