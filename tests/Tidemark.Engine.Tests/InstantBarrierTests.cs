using Tidemark.Engine.Disks;
using Tidemark.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>The instant barrier's contract, step by step (no timing: each step's state is forced by the previous one).</summary>
public sealed class InstantBarrierTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // A broken barrier hangs rather than fails; the timeout turns that into a failure naming the test.
    [Fact(Timeout = 60_000)]
    public async Task Close_DrainsInFlight_HoldsNewRequests_OpenReleasesThem()
    {
        var ct = TestContext.Current.CancellationToken;
        var barrier = new InstantBarrier();
        var inFlight = await barrier.EnterAsync(ct);

        var closing = barrier.CloseAsync(ct);
        Assert.False(closing.IsCompleted);
        Assert.True(barrier.IsClosed);

        var waiting = barrier.EnterAsync(ct).AsTask();
        Assert.False(waiting.IsCompleted);

        inFlight.Dispose();
        var closure = await closing;
        Assert.False(waiting.IsCompleted);

        closure.Dispose();
        closure.Dispose();
        Assert.False(barrier.IsClosed);
        var released = await waiting;

        // The next closer waits for the released request, and a third closer for the second to open.
        // (Each step is forced by the one before: a closer racing a released waiter would be timing.)
        var second = barrier.CloseAsync(ct);
        Assert.False(second.IsCompleted);
        var third = barrier.CloseAsync(ct);
        released.Dispose();
        var secondClosure = await second;
        Assert.False(third.IsCompleted);
        secondClosure.Dispose();
        (await third).Dispose();
        Assert.False(barrier.IsClosed);
    }

    [Fact(Timeout = 60_000)]
    public async Task CancelledClose_OpensTheBarrierAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        var barrier = new InstantBarrier();
        var inFlight = await barrier.EnterAsync(ct);
        using var cancel = new CancellationTokenSource();
        var closing = barrier.CloseAsync(cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => closing);
        Assert.False(barrier.IsClosed);
        (await barrier.EnterAsync(ct)).Dispose();
        inFlight.Dispose();
    }

    [Fact]
    public async Task GuestDisk_InterceptorRunsBeforeTheImage_AndIsSetOnlyUnderAClosedBarrier()
    {
        var barrier = new InstantBarrier();
        await using var image = new RecordingImage();
        var disk = new GuestDisk(image, barrier, new GuestGate());
        var interceptor = new RecordingInterceptor(image.Log);

        using (var other = await new InstantBarrier().CloseAsync(Ct))
        {
            Assert.Throws<InvalidOperationException>(() => disk.SetInterceptor(interceptor, other));
        }

        using (var closure = await barrier.CloseAsync(Ct))
        {
            disk.SetInterceptor(interceptor, closure);
        }

        await disk.WriteAsync(4096, new byte[512], cancellationToken: Ct);
        await disk.WriteZeroesAsync(0, 1024, cancellationToken: Ct);
        await disk.DiscardAsync(8192, 4096, Ct);
        await disk.ReadAsync(0, new byte[512], Ct);
        Assert.Equal(["cbw 4096+512", "write 4096+512", "cbw 0+1024", "zero 0+1024", "cbw 8192+4096", "discard 8192+4096"], image.Log);
    }

    private sealed class RecordingInterceptor(List<string> log) : IGuestWriteInterceptor
    {
        public ValueTask BeforeGuestWriteAsync(long offset, long length, CancellationToken cancellationToken)
        {
            log.Add($"cbw {offset}+{length}");
            return ValueTask.CompletedTask;
        }
    }

    private sealed class RecordingImage : IBlockImage
    {
        public List<string> Log { get; } = [];

        public long VirtualSize => 1 << 20;

        public bool IsReadOnly => false;

        public int AllocationGranularity => 4096;

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        {
            Log.Add($"write {offset}+{data.Length}");
            return ValueTask.CompletedTask;
        }

        public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        {
            Log.Add($"zero {offset}+{length}");
            return ValueTask.CompletedTask;
        }

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
        {
            Log.Add($"discard {offset}+{length}");
            return ValueTask.CompletedTask;
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
            => ValueTask.FromResult<IReadOnlyList<BlockExtent>>([new BlockExtent(offset, length, ExtentKind.Data, 1)]);

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
