using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// A store that fails its writes (a full scratch), under each copy-before-write failure policy:
/// either the job fails and the guest write goes on, or the guest write fails and the job goes
/// on; never a backup that mixes instants.
/// </summary>
public sealed class FailurePolicyTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task FailJob_ScratchWriteFails_JobFailsAndTheGuestWriteLands()
    {
        using var dir = new TempDirectory("cbw-fail-job");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        FaultyImage? scratchImage = null;
        var scratch = dir.File("scratch.qcow2");
        var options = new BackupJobOptions
        {
            OnCopyBeforeWriteError = OnCopyBeforeWriteError.FailJob,
            StoreWrapper = image => scratchImage = new FaultyImage(image),
        };
        await using var job = await BackupJob.PrepareAsync(Documents.Pull(dir.File("backup.sock"), scratch), [disk.Source()], options, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        job.Start();
        scratchImage!.Failing = true;

        // One batch of copies (ScratchWriteBehind.BatchBytes): the scratch write comes at once.
        var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x77 0 256k", disk.Uri]);

        Assert.DoesNotContain("failed", write.Stdout + write.Stderr, StringComparison.Ordinal);
        var info = await job.Completion.WaitAsync(JobTimeout, Token);
        Assert.Equal(BackupJobPhase.Failed, info.Phase);
        Assert.Contains("copy before write of disk 'vda' failed: No space left on device", info.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(BackupDiskState.Failed, job.Definition.Disks[0].State);
        Assert.Equal(0, disk.Guest.FailedWrites);
        Assert.False(File.Exists(scratch));
        var read = await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "read -P 0x77 0 256k", disk.Uri);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);

        // The ended job no longer copies anything: later guest writes pass untouched.
        await disk.Guest.WriteAsync(8 << 20, new byte[65536], cancellationToken: Token);
    }

    [Fact]
    public async Task FailGuestWrite_ScratchWriteFails_GuestWriteFailsAndTheExportStaysTheInstant()
    {
        using var dir = new TempDirectory("cbw-fail-write");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        FaultyImage? scratchImage = null;
        var socket = dir.File("backup.sock");
        var options = new BackupJobOptions
        {
            OnCopyBeforeWriteError = OnCopyBeforeWriteError.FailGuestWrite,
            StoreWrapper = image => scratchImage = new FaultyImage(image),
        };
        await using var job = await BackupJob.PrepareAsync(Documents.Pull(socket, dir.File("scratch.qcow2")), [disk.Source()], options, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        job.Start();
        scratchImage!.Failing = true;

        var failed = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x77 0 64k", disk.Uri]);

        Assert.Contains("write failed", failed.Stdout + failed.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, disk.Guest.FailedWrites);
        Assert.Equal(BackupJobPhase.Running, job.Phase);
        var old = await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "read -P 0x61 0 64k", disk.Uri);
        Assert.DoesNotContain("Pattern verification failed", old, StringComparison.Ordinal);

        // Once the scratch has room again, the same write copies the cluster aside and lands.
        scratchImage.Failing = false;
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 0 64k", disk.Uri);
        Assert.Equal(65536, job.Info.ScratchBytesInUse);
        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={socket}", copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);

        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
    }

    [Fact]
    public async Task StoreBreaksWhileClosing_TheJobStillEnds_FailedWithThatError()
    {
        using var dir = new TempDirectory("store-breaks");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var scratch = dir.File("scratch.qcow2");
        var options = new BackupJobOptions { StoreWrapper = image => new FaultyImage(image) { BreaksOnClose = true } };
        await using var job = await BackupJob.PrepareAsync(Documents.Pull(dir.File("backup.sock"), scratch), [disk.Source()], options, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        job.Start();

        // An abort whose cleanup meets an unexpected error still ends the job: whoever waits
        // for it (abort, dispose, the daemon's job table) is never left waiting.
        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);

        Assert.Equal(BackupJobPhase.Failed, info.Phase);
        Assert.Equal("the store broke while closing", info.ErrorMessage);
        Assert.False(File.Exists(scratch), "the scratch is removed all the same");
    }

    [Fact]
    public async Task PushTargetWriteFails_JobFailsAndRemovesTheTarget()
    {
        using var dir = new TempDirectory("push-fail");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Raw);
        var target = dir.File("backup.qcow2");
        var options = new BackupJobOptions { StoreWrapper = image => new FaultyImage(image) { Failing = true } };
        await using var job = await BackupJob.PrepareAsync(Documents.Push(target, StorageFormat.Qcow2), [disk.Source()], options, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        job.Start();

        var info = await job.Completion.WaitAsync(JobTimeout, Token);

        Assert.Equal(BackupJobPhase.Failed, info.Phase);
        Assert.Equal("operation failed: backup of disk 'vda' failed: No space left on device", info.ErrorMessage);
        Assert.Equal(BackupDiskState.Failed, job.Definition.Disks[0].State);
        Assert.False(File.Exists(target));
    }
}
