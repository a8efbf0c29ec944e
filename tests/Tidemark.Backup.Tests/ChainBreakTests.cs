using Tidemark.Backup.Repository;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Backup.Verify;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// What breaks a chain, and what a failed or interrupted backup leaves: <c>auto</c> takes a
/// full for exactly the disks whose chain broke and says why; a failure leaves no checkpoint
/// on the host and nothing in the repository that looks like a backup.
/// </summary>
public sealed class ChainBreakTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task CheckpointDeletedBehindTheClient_AutoTakesAFullAndSaysWhy()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x11 0 1M");
        var full = await host.BackupAsync();
        await using (var client = await host.ConnectAsync())
        {
            var domain = await client.LookupDomainByNameAsync("dom", Ct);
            await client.DeleteCheckpointAsync(await client.LookupCheckpointByNameAsync(domain, full.Checkpoint, 0, Ct), 0, Ct);
        }

        await host.GuestWriteAsync("vda", "write -P 0x12 4M 1M");
        var refused = await Assert.ThrowsAsync<BackupException>(() => host.BackupAsync(LevelRequest.Incremental));
        Assert.Equal($"cannot back up disk 'vda' incrementally: checkpoint '{full.Checkpoint}' of the last backup no longer exists on the host (deleted); use --level full or auto", refused.Message);

        var lines = new List<string>();
        var next = await host.BackupAsync(LevelRequest.Auto, lines);
        var disk = next.Disks.Single();
        Assert.Equal(BackupLevel.Full, disk.Level);
        Assert.Contains($"vda: full (checkpoint '{full.Checkpoint}' of the last backup no longer exists on the host (deleted))", lines);
        Assert.NotEqual(full.Chain, next.Chain);
        Assert.Equal(2L << 20, disk.DataBytes);
        Assert.Null(disk.BackingFile);
        Assert.Equal([next.Checkpoint], await host.HostCheckpointsAsync());
    }

    [Fact]
    public async Task DiskNotInTheLastBackup_FullForIt_IncrementalForTheOther()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"), ("vdb", "8M"));
        await host.GuestWriteAsync("vda", "write -P 0x21 0 1M");
        await host.GuestWriteAsync("vdb", "write -P 0x22 0 1M");
        var first = await BackupRunner.RunAsync(host.Options() with { Disks = ["vda"] }, Ct);
        Assert.Equal(["vda"], first.Disks.Select(d => d.Name));

        await host.GuestWriteAsync("vda", "write -P 0x23 2M 64k");
        var captures = new Dictionary<string, string> { ["vda"] = await host.CaptureAsync("vda", "a.raw"), ["vdb"] = await host.CaptureAsync("vdb", "b.raw") };
        var second = await host.BackupAsync();
        Assert.Equal(BackupLevel.Incremental, second.Disk("vda")!.Level);
        Assert.Equal(64L << 10, second.Disk("vda")!.DataBytes);
        Assert.Equal(BackupLevel.Full, second.Disk("vdb")!.Level);
        Assert.Equal("disk added since the last backup (none of it in the repository)", second.Disk("vdb")!.Reason);
        Assert.Equal(first.Chain, second.Chain);

        var output = host.Directory.File("restored");
        var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output }, Ct);
        foreach (var disk in restored)
        {
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", disk.Path, captures[disk.Disk]]);
            Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        }
    }

    /// <summary>
    /// A disk hot-plugged into the running domain with stock virsh after a full: the next run
    /// makes a full of it, saying why, while the other stays incremental; the run after that
    /// continues both from one checkpoint; every point restores to what the guest wrote.
    /// </summary>
    [Fact]
    public async Task DiskHotplugged_FullOfItOnly_ThenIncrementalForBoth_EveryPointRestores()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x31 0 1M");
        var captures = new List<Dictionary<string, string>> { new() { ["vda"] = await host.CaptureAsync("vda", "p0-vda.raw") } };
        var full = await host.BackupAsync();

        await host.AttachDiskAsync("vdb", "8M");
        await host.GuestWriteAsync("vda", "write -P 0x32 4M 64k");
        await host.GuestWriteAsync("vdb", "write -P 0x33 1M 512k");
        captures.Add(new() { ["vda"] = await host.CaptureAsync("vda", "p1-vda.raw"), ["vdb"] = await host.CaptureAsync("vdb", "p1-vdb.raw") });
        var lines = new List<string>();
        var added = await host.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(BackupLevel.Incremental, added.Disk("vda")!.Level);
        Assert.Equal(64L << 10, added.Disk("vda")!.DataBytes);
        Assert.Equal(BackupLevel.Full, added.Disk("vdb")!.Level);
        Assert.Equal("disk added since the last backup (none of it in the repository)", added.Disk("vdb")!.Reason);
        Assert.Equal(512L << 10, added.Disk("vdb")!.DataBytes);
        Assert.Equal(full.Chain, added.Chain);

        await host.GuestWriteAsync("vdb", "write -P 0x34 6M 64k");
        captures.Add(new() { ["vda"] = await host.CaptureAsync("vda", "p2-vda.raw"), ["vdb"] = await host.CaptureAsync("vdb", "p2-vdb.raw") });
        var next = await host.BackupAsync(LevelRequest.Incremental);
        Assert.All(next.Disks, d => Assert.Equal(added.Checkpoint, d.Base));
        Assert.Equal(64L << 10, next.Disk("vdb")!.DataBytes);
        Assert.Equal(0, next.Disk("vda")!.DataBytes);

        var points = new[] { full, added, next };
        for (var i = 0; i < points.Length; i++)
        {
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Checkpoint = points[i].Checkpoint, Output = host.Directory.File($"r{i}") }, Ct);
            Assert.Equal(captures[i].Keys.Order(StringComparer.Ordinal), restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            foreach (var disk in restored)
            {
                var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", disk.Path, captures[i][disk.Disk]]);
                Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
            }
        }
    }

    [Fact]
    public async Task BitmapMissingOnTheHost_TheHostRefusesTheIncremental_TheDiskIsRetriedAsAFull()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x31 0 1M");
        var full = await host.BackupAsync();

        // The bitmap is gone from the image while libvirt's metadata keeps the checkpoint.
        await host.RestartAsync(() => Peer.RunCheckedAsync("qemu-img", "bitmap", "--remove", host.Images["vda"], full.Checkpoint));
        var lines = new List<string>();
        var next = await host.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(BackupLevel.Full, next.Disks.Single().Level);
        Assert.StartsWith("bitmap broken on the host: checkpoint inconsistent: missing or broken bitmap", next.Disks.Single().Reason, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("vda: bitmap broken on the host", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CancelledMidBackup_NoCheckpointLeft_EarlierBackupsIntact_NextRunClean()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x41 0 2M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x42 1M 2M");

        // Cancelled once the job has begun and the checkpoint exists, before the copy ends.
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var reported = new List<string>();
        var options = host.Options() with
        {
            Report = line =>
            {
                reported.Add(line);
                if (line.StartsWith("vda: incremental", StringComparison.Ordinal))
                {
                    cancel.Cancel();
                }
            },
        };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => BackupRunner.RunAsync(options, cancel.Token));
        Assert.Contains(reported, l => l.StartsWith("cleaned up after the failed backup: its checkpoint tidemark.", StringComparison.Ordinal) && l.EndsWith(" deleted from the host", StringComparison.Ordinal));

        Assert.Equal([full.Checkpoint], await host.HostCheckpointsAsync());
        Assert.Equal([full.Checkpoint], (await host.Repository.ReadManifestsAsync("dom", Ct)).Select(m => m.Checkpoint));
        Assert.False(File.Exists(host.Repository.PendingPath("dom")));
        Assert.True((await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct)).Passed);

        var capture = await host.CaptureAsync("vda", "now.raw");
        var lines = new List<string>();
        var next = await host.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(BackupLevel.Incremental, next.Disks.Single().Level);
        Assert.DoesNotContain(lines, l => l.StartsWith("removed leftover", StringComparison.Ordinal));
        var restored = host.Directory.File("r.raw");
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = restored }, Ct);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", restored, capture])).ExitCode);
    }

    [Fact]
    public async Task ClientDiedAfterBegin_NextRunEndsTheJob_DeletesTheCheckpoint_RemovesTheLeftovers()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x51 0 1M");
        var full = await host.BackupAsync();

        // What a client killed mid-copy leaves: the pending record, the job and its checkpoint
        // on the host, and a half-written chain file.
        var dead = await LeaveInterruptedRunAsync(host, full);

        await File.WriteAllTextAsync(host.Repository.PathOf("dom", BackupRepository.ChainFileName("vda", dead)), "partial", Ct);

        var lines = new List<string>();
        var next = await host.BackupAsync(LevelRequest.Auto, lines);
        Assert.Contains("removed leftover of an interrupted backup: dom/vda/" + dead + ".qcow2", lines);
        Assert.Contains("ended the backup job an interrupted run left on domain 'dom'", lines);
        Assert.Contains($"deleted checkpoint {dead} of an interrupted backup from the host", lines);
        Assert.Equal(BackupLevel.Incremental, next.Disks.Single().Level);
        Assert.Equal([next.Checkpoint], await host.HostCheckpointsAsync());
    }

    /// <summary>
    /// Leftovers are only this client's own files of the domain backed up: a disk image a user
    /// keeps under the repository, a file under another domain's directory and a chain file
    /// whose manifest was lost but that later backups build on all stay, and the chain still
    /// restores.
    /// </summary>
    [Fact]
    public async Task Leftovers_AreOnlyTheClientsOwnFiles_AndNeverAFileALaterBackupBuildsOn()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x51 0 1M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x52 1M 1M");
        var first = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x53 2M 1M");
        var second = await host.BackupAsync();

        string[] foreign =
        [
            Path.Combine(host.Repository.Root, "images", "prod-vm.qcow2"),
            Path.Combine(host.Repository.Root, "other", "vda", "disk.qcow2"),
            host.Repository.PathOf("dom", "vda/mine.qcow2"),
            host.Repository.PathOf("dom", "notes.domain.xml"),
        ];
        foreach (var file in foreign)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", file, "1M");
        }

        // The middle backup's manifest is lost; its chain file is the backing file of the last.
        File.Delete(host.Repository.ManifestPath("dom", first.Checkpoint));
        var lines = new List<string>();
        await host.GuestWriteAsync("vda", "write -P 0x54 3M 1M");
        var capture = await host.CaptureAsync("vda", "last.raw");
        var last = await host.BackupAsync(LevelRequest.Auto, lines);

        Assert.DoesNotContain(lines, l => l.StartsWith("removed leftover", StringComparison.Ordinal));
        Assert.All(foreign, f => Assert.True(File.Exists(f), f));
        Assert.True(File.Exists(host.Repository.PathOf("dom", BackupRepository.ChainFileName("vda", first.Checkpoint))));
        Assert.Equal(BackupLevel.Incremental, last.Disks.Single().Level);
        Assert.Equal(second.Checkpoint, last.Parent);
        var restored = host.Directory.File("restored.raw");
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = restored }, Ct);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", restored, capture]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        Assert.NotNull(full);
    }

    /// <summary>
    /// The host died mid-backup before it stored the new checkpoint's bitmap: the checkpoint
    /// is on the host without it. The next run deletes it anyway and goes on, where a plain
    /// delete failed ("bitmap … not found in backing chain") on every run after.
    /// </summary>
    [Fact]
    public async Task HostDiedBeforeStoringTheNewCheckpointsBitmap_NextRunDeletesItAndBacksUp()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x51 0 1M");
        var full = await host.BackupAsync();
        var dead = await LeaveInterruptedRunAsync(host, full);

        await host.RestartAsync(() => Peer.RunCheckedAsync("qemu-img", "bitmap", "--remove", host.Images["vda"], dead));
        await host.GuestWriteAsync("vda", "write -P 0x52 1M 1M");
        var lines = new List<string>();
        var next = await host.BackupAsync(LevelRequest.Auto, lines);

        Assert.Contains($"deleted checkpoint {dead} of an interrupted backup from the host", lines);
        Assert.Equal(BackupLevel.Incremental, next.Disks.Single().Level);
        Assert.Equal([next.Checkpoint], await host.HostCheckpointsAsync());
    }

    [Fact]
    public async Task SecondWriter_IsRefusedWhileTheLockIsHeld()
    {
        await using var host = await BackupHost.StartAsync(("vda", "8M"));
        using (RepositoryLock.Acquire(host.Repository.Root))
        {
            var e = await Assert.ThrowsAsync<BackupException>(() => host.BackupAsync());
            Assert.Equal(BackupErrorReason.RepositoryLocked, e.Reason);
            Assert.Contains($"is in use by", e.Message, StringComparison.Ordinal);
        }

        Assert.Empty(await host.HostCheckpointsAsync());
        await host.BackupAsync();
    }

    /// <summary>
    /// A work directory too deep for the job's socket is refused before anything is asked of the
    /// host: no checkpoint, no job, nothing pending; a run from a shorter one then succeeds.
    /// </summary>
    [Fact]
    public async Task WorkDirectoryTooDeepForASocket_IsRefusedBeforeTheHostIsAsked()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x31 0 1M");
        var deep = host.Directory.File(new string('w', 120));
        Directory.CreateDirectory(deep);
        var e = await Assert.ThrowsAsync<BackupException>(() => BackupRunner.RunAsync(host.Options() with { WorkDirectory = deep }, Ct));
        Assert.Equal(BackupErrorReason.InvalidRequest, e.Reason);
        Assert.Contains("bytes of a unix socket's path: its work directory is too deep", e.Message, StringComparison.Ordinal);
        Assert.Empty(await host.HostCheckpointsAsync());
        Assert.Empty(Directory.GetFileSystemEntries(deep));
        Assert.Null(await host.Repository.ReadPendingAsync("dom", Ct));
        await using (var client = await host.ConnectAsync())
        {
            Assert.Equal(Tidemark.Remote.Protocol.DomainJobType.None, (await client.GetJobStatsAsync(await client.LookupDomainByNameAsync("dom", Ct), 0, Ct)).Type);
        }

        Assert.Single((await host.BackupAsync()).Disks);
    }

    /// <summary>
    /// What a client killed after it began its next backup leaves: the pending record, and the
    /// pull job with its checkpoint on the host. Returns the checkpoint's name.
    /// </summary>
    private static async Task<string> LeaveInterruptedRunAsync(BackupHost host, BackupManifest full)
    {
        var work = host.Directory.File("w");
        Directory.CreateDirectory(work);
        var socket = Path.Combine(work, "nbd.sock");
        var dead = $"tidemark.{full.Chain}.1";
        await host.Repository.WritePendingAsync(new PendingBackup("dom", dead, socket, work, DateTimeOffset.UtcNow), Ct);
        await using var client = await host.ConnectAsync();
        var domain = await client.LookupDomainByNameAsync("dom", Ct);
        await client.BeginBackupAsync(
            domain,
            $"<domainbackup mode='pull'><incremental>{full.Checkpoint}</incremental><server transport='unix' socket='{socket}'/><disks><disk name='vda' type='file'><scratch file='{work}/vda.scratch'/></disk></disks></domainbackup>",
            $"<domaincheckpoint><name>{dead}</name></domaincheckpoint>",
            0,
            Ct);
        return dead;
    }
}
