using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// A pull under the fail-the-job policy lets the guest write go on once a cluster's old content
/// is in memory, and writes the scratch behind it. While that write is in flight the view
/// serves the old content from memory; if the write fails, the job fails and the view never
/// serves the guest's new data. Copies are written a batch at a time.
/// </summary>
public sealed class ScratchWriteBehindTests
{
    /// <summary>One <see cref="ScratchWriteBehind.BatchBytes"/>: each copy of a cluster wakes the writer.</summary>
    private const int Cluster = (int)ScratchWriteBehind.BatchBytes;
    private static readonly TimeSpan Deadlock = TimeSpan.FromMinutes(1);

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ViewRead_WhileTheScratchWriteIsInFlight_ReturnsTheOldContent()
    {
        var (live, instant) = Live(4);
        var scratch = new TracedMemoryImage(new byte[4 * Cluster], new bool[4], Cluster, 2);
        var gated = new GatedImage(scratch);
        var failures = new List<Exception>();
        var (copyBeforeWrite, view) = await ArmAsync(live, gated, failures.Add);

        // The guest write goes on while the copy of cluster 1 waits at the scratch's gate.
        await copyBeforeWrite.BeforeGuestWriteAsync(Cluster + 512, 4096, Token).AsTask().WaitAsync(Deadlock, Token);
        await live.WriteAsync(Cluster + 512, Filled(4096, 0xee), cancellationToken: Token);
        Assert.Equal(0, gated.Written);

        var read = new byte[3 * Cluster];
        await view.ReadAsync(Cluster / 2, read, Token);
        Assert.True(read.AsSpan().SequenceEqual(instant.AsSpan(Cluster / 2, read.Length)), "the view serves the in-flight copy");

        gated.Open();
        await copyBeforeWrite.DetachAsync().WaitAsync(Deadlock, Token);
        Assert.Equal(1, gated.Written);
        Assert.True(scratch.Snapshot().AsSpan(Cluster, Cluster).SequenceEqual(instant.AsSpan(Cluster, Cluster)), "the scratch holds the old content");
        Assert.Empty(failures);
    }

    [Fact]
    public async Task ViewRead_AfterTheScratchWrite_ReadsTheScratch()
    {
        var (live, instant) = Live(4);
        var scratch = new TracedMemoryImage(new byte[4 * Cluster], new bool[4], Cluster, 3);
        var gated = new GatedImage(scratch);
        gated.Open();
        var (copyBeforeWrite, view) = await ArmAsync(live, gated, _ => { });

        await copyBeforeWrite.BeforeGuestWriteAsync(0, 2 * Cluster, Token).AsTask().WaitAsync(Deadlock, Token);
        await live.WriteAsync(0, Filled(2 * Cluster, 0xee), cancellationToken: Token);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (copyBeforeWrite.BytesInMemory > 0)
        {
            Assert.True(waited.Elapsed < Deadlock, "the scratch write never completed");
            await Task.Delay(1, Token);
        }

        Assert.Equal(1, gated.Written);
        var read = new byte[4 * Cluster];
        await view.ReadAsync(0, read, Token);
        Assert.True(read.AsSpan().SequenceEqual(instant), "the view reads the copy back from the scratch");
        await copyBeforeWrite.DetachAsync().WaitAsync(Deadlock, Token);
    }

    [Fact]
    public async Task ScratchWriteFails_TheJobFailsAndTheViewNeverServesNewData()
    {
        var (live, _) = Live(4);
        var gated = new GatedImage(new TracedMemoryImage(new byte[4 * Cluster], new bool[4], Cluster, 4)) { Failing = true };
        var failed = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var (copyBeforeWrite, view) = await ArmAsync(live, gated, e => failed.TrySetResult(e));

        await copyBeforeWrite.BeforeGuestWriteAsync(0, 4096, Token).AsTask().WaitAsync(Deadlock, Token);
        await live.WriteAsync(0, Filled(4096, 0xee), cancellationToken: Token);
        gated.Open();

        var failure = await failed.Task.WaitAsync(Deadlock, Token);
        Assert.Contains("copy before write of disk 'vda' failed: No space left on device", failure.Message, StringComparison.Ordinal);
        Assert.Same(failure, copyBeforeWrite.Failure);
        var error = await Assert.ThrowsAsync<BackupJobException>(async () => await view.ReadAsync(0, new byte[Cluster], Token));
        Assert.Equal(BackupErrorReason.JobEnded, error.Reason);

        // The failed job lets later guest writes pass untouched.
        await copyBeforeWrite.BeforeGuestWriteAsync(2 * Cluster, 4096, Token).AsTask().WaitAsync(Deadlock, Token);
        Assert.Equal(1, gated.Arrived);
        await copyBeforeWrite.DetachAsync().WaitAsync(Deadlock, Token);
    }

    [Fact]
    public async Task CopiesInMemory_AreBounded_TheNextGuestWriteWaitsForTheScratch()
    {
        var clusters = (int)(ScratchWriteBehind.MaxBytes / Cluster) + 2;
        var (live, instant) = Live(clusters);
        var gated = new GatedImage(new TracedMemoryImage(new byte[clusters * Cluster], new bool[clusters], Cluster, 5));
        var (copyBeforeWrite, view) = await ArmAsync(live, gated, _ => { });

        for (var c = 0; c < clusters - 2; c++)
        {
            await copyBeforeWrite.BeforeGuestWriteAsync((long)c * Cluster, 512, Token).AsTask().WaitAsync(Deadlock, Token);
        }

        // Memory is full: this write cannot go on before a scratch write completes.
        var blocked = copyBeforeWrite.BeforeGuestWriteAsync((long)(clusters - 2) * Cluster, 512, Token).AsTask();
        await Task.Delay(50, Token);
        Assert.False(blocked.IsCompleted, "a guest write went on past the memory bound");

        gated.Open();
        await blocked.WaitAsync(Deadlock, Token);
        var read = new byte[clusters * Cluster];
        await view.ReadAsync(0, read, Token);
        Assert.True(read.AsSpan().SequenceEqual(instant), "the view is the instant");
        await copyBeforeWrite.DetachAsync().WaitAsync(Deadlock, Token);
        Assert.Equal(clusters - 1, gated.Written);
    }

    [Fact]
    public async Task SmallCopies_LetTheGuestGoOnAtOnce_AndAreWrittenABatchAtATime()
    {
        const int Block = (int)InstantClusters.MinViewGranularity;
        const int PerBatch = (int)(ScratchWriteBehind.BatchBytes / Block);
        var (live, instant) = Live(4);
        var gated = new GatedImage(new TracedMemoryImage(new byte[4 * Cluster], new bool[4], Cluster, 6));
        var atInstant = await InstantClusters.AllocatedAsync(live, Block, Token);
        var copyBeforeWrite = new CopyBeforeWrite("vda", live, new CopyAsideStore(gated, Block, ZeroClusters.Skip), atInstant.Clone(), trackCopies: true, OnCopyBeforeWriteError.FailJob, _ => { });
        var view = new PointInTimeView(copyBeforeWrite, atInstant, live.VirtualSize);

        // One block short of a batch: every guest write goes on at once, nothing reaches the scratch.
        async Task GuestWriteAsync(int i)
        {
            var offset = (long)((i * 61) % (4 * PerBatch)) * Block;
            await copyBeforeWrite.BeforeGuestWriteAsync(offset, Block, Token).AsTask().WaitAsync(Deadlock, Token);
            await live.WriteAsync(offset, Filled(Block, 0xee), cancellationToken: Token);
        }

        for (var i = 0; i < PerBatch - 1; i++)
        {
            await GuestWriteAsync(i);
        }

        Assert.Equal(0, gated.Arrived);
        Assert.Equal((PerBatch - 1) * Block, copyBeforeWrite.BytesInMemory);
        var read = new byte[4 * Cluster];
        await view.ReadAsync(0, read, Token);
        Assert.True(read.AsSpan().SequenceEqual(instant), "the view serves the copies from memory");

        // The block that completes a batch wakes the writer; the guest write still goes on at once.
        await GuestWriteAsync(PerBatch - 1);
        await gated.FirstArrival.WaitAsync(Deadlock, Token);
        await GuestWriteAsync(PerBatch);
        gated.Open();
        var waited = System.Diagnostics.Stopwatch.StartNew();
        // The batch leaves memory once all of it is in the scratch (not as each piece lands).
        while (copyBeforeWrite.BytesInMemory > Block)
        {
            Assert.True(waited.Elapsed < Deadlock, "the batch never reached the scratch");
            await Task.Delay(1, Token);
        }

        // Less than a batch waits in memory for more, or for the end of the job.
        Assert.Equal(PerBatch, gated.Written);
        Assert.Equal(Block, copyBeforeWrite.BytesInMemory);
        await view.ReadAsync(0, read, Token);
        Assert.True(read.AsSpan().SequenceEqual(instant), "the view reads the scratch and memory");
        await copyBeforeWrite.DetachAsync().WaitAsync(Deadlock, Token);
        Assert.Equal(PerBatch + 1, gated.Written);
        Assert.Equal(0, copyBeforeWrite.BytesInMemory);
        Assert.Equal((PerBatch + 1) * Block, copyBeforeWrite.CopiedBytes);
    }

    /// <summary>A live disk of <paramref name="clusters"/> allocated clusters of random bytes, and its content.</summary>
    private static (TracedMemoryImage Live, byte[] Instant) Live(int clusters)
    {
        var content = new byte[clusters * Cluster];
        new Random(clusters).NextBytes(content);
        var allocated = Enumerable.Repeat(true, clusters).ToArray();
        var live = new TracedMemoryImage(content, allocated, Cluster, clusters);
        return (live, live.Snapshot());
    }

    private static async Task<(CopyBeforeWrite, PointInTimeView)> ArmAsync(TracedMemoryImage live, GatedImage scratch, Action<Exception> onJobFailure)
    {
        var atInstant = await InstantClusters.AllocatedAsync(live, Cluster, Token);
        var copyBeforeWrite = new CopyBeforeWrite("vda", live, new CopyAsideStore(scratch, Cluster, ZeroClusters.Skip), atInstant.Clone(), trackCopies: true, OnCopyBeforeWriteError.FailJob, onJobFailure);
        return (copyBeforeWrite, new PointInTimeView(copyBeforeWrite, atInstant, live.VirtualSize));
    }

    private static byte[] Filled(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }
}
