using System.Collections.Concurrent;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// What a restore reports to a progress display: each disk once, with the bytes its chain holds
/// data for at that point (zeroed and never-written areas are not read, so not counted), then
/// every read; the reads add up to exactly that, and the output still equals the capture.
/// </summary>
public sealed class RestoreProgressTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task Restore_PlansEachDisksDataBytes_AndItsReadsAddUpToThem()
    {
        await using var host = await BackupHost.StartAsync(("vda", "32M"), ("vdb", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 3M", "write -P 0x62 20M 512k");
        await host.GuestWriteAsync("vdb", "write -P 0x63 4M 1M");
        await host.BackupAsync();

        // The incremental zeroes vda's first MiB over the full's data and adds one more.
        await host.GuestWriteAsync("vda", "write -z 0 1M", "write -P 0x71 10M 1M");
        var captures = new Dictionary<string, string> { ["vda"] = await host.CaptureAsync("vda", "vda.raw"), ["vdb"] = await host.CaptureAsync("vdb", "vdb.raw") };
        await host.BackupAsync(LevelRequest.Incremental);

        var progress = new RecordedProgress();
        var output = host.Directory.File("restored");
        var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output + "/", Progress = progress }, Ct);

        Assert.Equal(new Dictionary<string, long> { ["vda"] = (3L << 20) + (512L << 10), ["vdb"] = 1L << 20 }, progress.PlannedBytes);
        Assert.Equal(progress.PlannedBytes, progress.CopiedBytes.ToDictionary());
        foreach (var disk in restored)
        {
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", disk.Path, captures[disk.Disk]]);
            Assert.True(compare.ExitCode == 0, $"{disk.Disk}: {compare.Stdout}{compare.Stderr}");
        }
    }

    /// <summary>Every call, from whichever thread: the planned bytes per disk (once each) and the sum of the copied ones.</summary>
    private sealed class RecordedProgress : IBackupProgress
    {
        public Dictionary<string, long> PlannedBytes { get; } = [];

        public ConcurrentDictionary<string, long> CopiedBytes { get; } = new(StringComparer.Ordinal);

        public void Planned(string disk, long bytes)
        {
            lock (PlannedBytes)
            {
                Assert.True(PlannedBytes.TryAdd(disk, bytes), $"{disk} planned twice");
            }
        }

        public void Copied(string disk, long bytes) => CopiedBytes.AddOrUpdate(disk, bytes, (_, sum) => sum + bytes);
    }
}
