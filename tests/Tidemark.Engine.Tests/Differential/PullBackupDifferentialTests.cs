using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;
using static Tidemark.Engine.Tests.Differential.GuestExportDifferentialTests;

namespace Tidemark.Engine.Tests.Differential;

/// <summary>
/// The guest export while a pull backup job runs on the domain: the guest's requests still get
/// qemu-nbd's replies (copy-before-write is invisible to it), and the job's export still reads
/// the disk, data and <c>base:allocation</c>, as it was when the job began.
/// </summary>
public sealed class PullBackupDifferentialTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    [Theory]
    [InlineData("qcow2", false)]
    [InlineData("raw", false)]
    [InlineData("qcow2", true)]
    public async Task GuestWritesDuringAPullJob_AnswerAsQemuNbd_AndTheJobServesTheInstant(string format, bool overABackingFile)
    {
        // Over a backing file holding data everywhere, a trim or zero of a cluster the overlay
        // never allocated changes what the guest reads (backing data becomes zeroes), so the
        // job must copy the backing data aside first.
        string[]? backingLayout = overABackingFile ? ["write -P 0x31 0 4M"] : null;
        await using var twins = await TwinExports.StartAsync(format, Size, Layout, backingLayout);
        var directory = twins.Test.Directory;
        var instant = directory.File("instant.raw");
        await Peer.RunCheckedAsync("nbdcopy", twins.TidemarkUri, instant);
        var instantMap = await new NbdRequestPlan().Status(0, Size).RunAsync(twins.TidemarkUri);

        var socket = directory.File("pull.sock");
        var backup = await twins.Domain.BeginBackupAsync(
            $"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{socket}'/>
              <disks><disk name='vda' type='file'><scratch file='{directory.File("scratch.qcow2")}'/></disk></disks>
            </domainbackup>
            """,
            null,
            cancellationToken: TestHost.Ct);

        // Every kind of change into data the instant held, into holes, unaligned and across
        // clusters, some with many requests in flight, each copying old data aside first.
        var plan = new NbdRequestPlan()
            .Write((64 * K) - 700, 1400, 0x21)
            .Write(3, 1, 0x22)
            .Write(Size - 512, 512, 0x23)
            .Read(63 * K, 3 * K)
            .Zero(100 * K, 10000)
            .Zero((128 * K) + 512, 64 * K, "no_hole")
            .Zero(0, 64 * K, "fast_zero")
            .Zero((1 * M) + 512, 4096, "fast_zero")
            .Zero((2 * M) + 512, 4096, "fast_zero")
            .Zero(Size - 1536, 1536, "fast_zero")
            .Trim(150 * K, 64 * K)
            .Trim(1 * M, 64 * K, "fua")
            .Trim(3 * M, 128 * K)
            .Zero((3 * M) + (256 * K), 64 * K)
            .Write(512 * K, 12 * K, 0x27, "fua")
            .WritesInFlight([.. Enumerable.Range(0, 64).Select(i => ((2 * M) + (i * 3000L) + 5, 3000L, (byte)(0x60 + (i % 32))))])
            .WritesInFlight([.. Enumerable.Range(0, 48).Select(i => (i * 4000L, 4000L, (byte)(0x90 + (i % 16))))])
            .Flush();
        WritesPastTheEnd(plan);
        plan.Status(0, Size)
            .Read(0, Size);
        await twins.AssertSameAsync(plan);

        // The job's export is the disk at the instant, as the guest saw it then.
        var pullUri = $"nbd+unix:///vda?socket={socket}";
        var copy = directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", pullUri, copy);
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", copy, instant);
        Assert.Equal(instantMap, await new NbdRequestPlan().Status(0, Size).RunAsync(pullUri));

        twins.Domain.AbortBackup();
        var info = await backup.Completion.WaitAsync(JobTimeout, TestHost.Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        await twins.StopAndCompareAsync();
    }
}
