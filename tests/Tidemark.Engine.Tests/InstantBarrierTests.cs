using Tidemark.Engine.Disks;
using Tidemark.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>The instant barrier's contract, step by step (no timing: each step's state is forced by the previous one).</summary>
public sealed class InstantBarrierTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Close_DrainsInFlight_HoldsNewRequests_OpenReleasesThem()
    {
        var barrier = new InstantBarrier();
        var inFlight = await barrier.EnterAsync(Ct);

        var closing = barrier.CloseAsync(Ct);
        Assert.False(closing.IsCompleted);
        Assert.True(barrier.IsClosed);

        var waiting = barrier.EnterAsync(Ct).AsTask();
        Assert.False(waiting.IsCompleted);

        inFlight.Dispose();
        var closure = await closing;
        Assert.False(waiting.IsCompleted);

        // A second closer waits for the first to open.
        var second = barrier.CloseAsync(Ct);
        Assert.False(second.IsCompleted);

        closure.Dispose();
        closure.Dispose();
        (await second).Dispose();
        (await waiting).Dispose();
        Assert.False(barrier.IsClosed);
    }

    [Fact]
    public async Task CancelledClose_OpensTheBarrierAgain()
    {
        var barrier = new InstantBarrier();
        var inFlight = await barrier.EnterAsync(Ct);
        using var cancel = new CancellationTokenSource();
        var closing = barrier.CloseAsync(cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => closing);
        Assert.False(barrier.IsClosed);
        (await barrier.EnterAsync(Ct)).Dispose();
        inFlight.Dispose();
    }

    [Fact]
    public async Task GuestDisk_InterceptorRunsBeforeTheImage_AndIsSetOnlyUnderAClosedBarrier()
    {
        var barrier = new InstantBarrier();
        await using var image = new RecordingImage();
        var disk = new GuestDisk(image, barrier);
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
