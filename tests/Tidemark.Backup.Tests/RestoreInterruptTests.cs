using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;

namespace Tidemark.Backup.Tests;

/// <summary>
/// A restore cancelled part way (SIGINT, SIGTERM) stops within the extent it is copying, not
/// after it, and leaves no output that looks complete: neither the disk it was writing nor one
/// it had already finished, nor a directory it made for them.
/// </summary>
public sealed class RestoreInterruptTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task CancelledWithinOneLargeExtent_StopsInBoundedChunks_NoOutputLeft()
    {
        await using var host = await BackupHost.StartAsync(("vda", "512M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 384M");
        var backup = await host.BackupAsync();
        Assert.Contains(backup.Disks.Single().Extents, e => e.Length >= 4L << 20);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var progress = new CancelAfter(stop, _ => true);
        var output = host.Directory.File("out.raw");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output, Progress = progress, SkipVerify = true }, stop.Token));

        // Eight 2 MiB requests in flight at most, then the copy notices: far from 384 MiB.
        Assert.True(progress.CopiedAfterCancel < 64L << 20, $"{progress.CopiedAfterCancel} bytes copied after the cancellation");
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.EnumerateFiles(host.Directory.Path, ".out.raw*"));
    }

    [Fact]
    public async Task CancelledAfterOneDiskOfTwo_RemovesTheFinishedDiskAndTheDirectory()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"), ("vdb", "512M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        await host.GuestWriteAsync("vdb", "write -P 0x62 0 384M");
        await host.BackupAsync();

        var output = host.Directory.File("restored");
        var finished = Path.Combine(output, "vda.raw");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        // Cancel during vdb's copy, once vda is restored and renamed into place.
        var progress = new CancelAfter(stop, disk =>
        {
            if (disk != "vdb")
            {
                return false;
            }

            SpinWait.SpinUntil(() => File.Exists(finished), TimeSpan.FromSeconds(30));
            return true;
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output, Progress = progress, SkipVerify = true }, stop.Token));
        Assert.True(progress.Cancelled);
        Assert.False(Directory.Exists(output), Directory.Exists(output) ? string.Join(", ", Directory.EnumerateFileSystemEntries(output)) : "");
    }

    /// <summary>Cancels the restore at the first read <paramref name="when"/> accepts, then counts what is still read.</summary>
    private sealed class CancelAfter(CancellationTokenSource stop, Func<string, bool> when) : IBackupProgress
    {
        private long _copiedAfterCancel;

        public bool Cancelled => stop.IsCancellationRequested;

        public long CopiedAfterCancel => Interlocked.Read(ref _copiedAfterCancel);

        public void Planned(string disk, long bytes)
        {
        }

        public void Copied(string disk, long bytes)
        {
            if (stop.IsCancellationRequested)
            {
                Interlocked.Add(ref _copiedAfterCancel, bytes);
            }
            else if (when(disk))
            {
                stop.Cancel();
            }
        }
    }
}
