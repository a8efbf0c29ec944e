using System.Text.Json;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Push backups while qemu-io keeps writing the same clusters over NBD: the target holds the
/// disk as it was at the job's instant (qemu-img compare against a copy taken at the instant),
/// and only what the job had to copy.
/// </summary>
public sealed class PushBackupTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(DiskKind.Qcow2, StorageFormat.Qcow2)]
    [InlineData(DiskKind.Raw, StorageFormat.Raw)]
    [InlineData(DiskKind.Raw, StorageFormat.Qcow2)]
    [InlineData(DiskKind.Qcow2WithBacking, StorageFormat.Qcow2)]
    public async Task Full_GuestWritingThroughout_TargetIsTheDiskAtTheInstant(DiskKind kind, StorageFormat format)
    {
        using var dir = new TempDirectory("push-full");
        await using var disk = await RunningDisk.StartAsync(dir, kind);
        await using var writer = GuestWriter.Start(disk.Uri);
        await writer.WaitRoundsAsync(1);

        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        var target = dir.File("backup." + StorageFormatNames.Of(format));
        var created = new List<string>();
        await using var job = await BackupJob.PrepareAsync(Documents.Push(target, format), [disk.Source()], new BackupJobOptions
        {
            OnCreatingFile = (path, _) =>
            {
                Assert.False(File.Exists(path), "a file is announced before it is created");
                created.Add(path);
                return ValueTask.CompletedTask;
            },
        }, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        writer.WriteLateHole = true;

        // Whole rounds before the job copies anything: every write meets copy-before-write.
        await writer.WaitRoundsAsync(1);
        Assert.True(job.Info.BytesProcessed > 0, "guest writes copied clusters aside before the job started");
        job.Start();
        var info = await job.Completion.WaitAsync(JobTimeout, Token);
        await writer.StopAsync();
        disk.Guest.Interceptor = null;

        Assert.Equal([target], created);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Null(info.ErrorMessage);
        Assert.Equal(info.BytesTotal, info.BytesProcessed);
        Assert.Equal(BackupDiskState.Complete, job.Definition.Disks[0].State);
        if (format == StorageFormat.Qcow2)
        {
            await Documents.AssertCleanAsync(target);
        }

        await Documents.AssertSameContentAsync(target, StorageFormatNames.Of(format), instant);

        // Holes at the instant stay holes in the target, even where the guest wrote afterwards.
        var map = await MapAsync(target, StorageFormatNames.Of(format));
        Assert.DoesNotContain(map, e => e.Data && e.Offset < (14 << 20) + 65536 && e.End > 14 << 20);
        Assert.DoesNotContain(map, e => e.Data && e.Offset < GuestWriter.LateHole + 65536 && e.End > GuestWriter.LateHole);
    }

    [Theory]
    [InlineData(DiskKind.Qcow2)]
    [InlineData(DiskKind.Raw)]
    [InlineData(DiskKind.Qcow2WithBacking)]
    public async Task Incremental_TargetHoldsExactlyTheBitmapClusters_AndRestoresTheInstantOverTheCheckpoint(DiskKind kind)
    {
        using var dir = new TempDirectory("push-inc");
        await using var disk = await RunningDisk.StartAsync(dir, kind);
        await using var writer = GuestWriter.Start(disk.Uri);
        await writer.WaitRoundsAsync(1);

        // The checkpoint: its content, and a bitmap recording every guest write from then on.
        await disk.Guest.PauseAsync();
        var checkpoint = await disk.CaptureAsync(dir, "checkpoint.raw");
        disk.Guest.ResetDirty();
        disk.Guest.Resume();
        await writer.WaitRoundsAsync(1);

        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        var bitmap = disk.Guest.Dirty.Clone();

        // Dirty but never written (the bitmap, not the writes, decides what is copied).
        bitmap.SetRange(28 << 20, 65536);
        var target = dir.File("inc.qcow2");
        await using var job = await BackupJob.PrepareAsync(Documents.Push(target, StorageFormat.Qcow2, "c1"), [disk.Source(bitmap)], new BackupJobOptions(), Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        await writer.WaitRoundsAsync(1);
        job.Start();
        var info = await job.Completion.WaitAsync(JobTimeout, Token);
        await writer.StopAsync();
        disk.Guest.Interceptor = null;

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Equal(bitmap.CountDirtyBytes(), info.BytesTotal);
        await Documents.AssertCleanAsync(target);

        // The header names the live disk's top image, as libvirt writes it (spec §6.10).
        var image = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", target)).RootElement;
        Assert.Equal(disk.Path, image.GetProperty("backing-filename").GetString());
        Assert.Equal(disk.Format.ToString().ToLowerInvariant(), image.GetProperty("backing-filename-format").GetString());

        // Rebased onto the checkpoint's content, as a user restores a chain, it is the instant.
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-b", checkpoint, "-F", "raw", target);
        // Every dirty cluster is the target's own: data, or the zero flag where it reads as
        // zeroes (as QEMU's block-copy leaves it), so the checkpoint's content never shows through.
        var own = QemuNbdExport.Coalesce((await MapAsync(target, "qcow2")).Where(e => e.Depth == 0).Select(e => new DirtyRun(e.Offset, e.End - e.Offset, true)));
        var dirty = QemuNbdExport.Coalesce(bitmap.EnumerateDirtyExtents(0, bitmap.Size).Select(e => new DirtyRun(e.Offset, e.Length, true)));
        Assert.Equal(dirty, own);
        await Documents.AssertSameContentAsync(target, "qcow2", instant);
    }

    [Fact]
    public async Task AbortBeforeStart_TargetRemoved_JobCancelled()
    {
        using var dir = new TempDirectory("push-abort");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var target = dir.File("backup.qcow2");
        await using var job = await BackupJob.PrepareAsync(Documents.Push(target, StorageFormat.Qcow2), [disk.Source()], new BackupJobOptions(), Token);
        Assert.True(File.Exists(target));
        Assert.Equal(BackupJobPhase.Prepared, job.Phase);

        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);

        Assert.Equal(BackupJobPhase.Cancelled, info.Phase);
        Assert.False(info.Success);
        Assert.False(File.Exists(target));
        Assert.Equal(BackupDiskState.Cancelled, job.Definition.Disks[0].State);
        Assert.Throws<InvalidOperationException>(job.Start);
    }

    internal readonly record struct MapEntry(long Offset, long End, bool Data, int Depth);

    internal static async Task<List<MapEntry>> MapAsync(string image, string format)
    {
        var json = await Peer.RunCheckedAsync("qemu-img", "map", "-U", "-f", format, "--output=json", image);
        return [.. JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => new MapEntry(
            e.GetProperty("start").GetInt64(),
            e.GetProperty("start").GetInt64() + e.GetProperty("length").GetInt64(),
            e.GetProperty("data").GetBoolean(),
            e.GetProperty("depth").GetInt32()))];
    }
}
