namespace Tidemark.Storage.Tests;

/// <summary>
/// <see cref="OrderedChunkCopy"/>: reads overlap, writes come in chunk order with the bytes
/// their own read produced, and a failure stops the copy and is what the caller sees.
/// </summary>
public sealed class OrderedChunkCopyTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Writes_ComeInChunkOrder_WithTheirOwnReadsBytes_WhenReadsFinishOutOfOrder()
    {
        const int count = 40;
        var written = new List<(int Chunk, byte Value)>();
        var readsAtOnce = 0;
        var mostReadsAtOnce = 0;
        await OrderedChunkCopy.RunAsync(
            count,
            16,
            async (i, buffer, token) =>
            {
                var now = Interlocked.Increment(ref readsAtOnce);
                InterlockedMax(ref mostReadsAtOnce, now);

                // Later chunks of a round finish first.
                await Task.Delay((count - i) % 5 * 3, token);
                buffer.Span.Fill((byte)i);
                Interlocked.Decrement(ref readsAtOnce);
            },
            (i, buffer, token) =>
            {
                lock (written)
                {
                    written.Add((i, buffer.Span[0]));
                }

                return ValueTask.CompletedTask;
            },
            Ct);

        Assert.Equal(Enumerable.Range(0, count).Select(i => (i, (byte)i)), written);
        Assert.True(mostReadsAtOnce > 1, "no two reads ran at once");
        Assert.True(mostReadsAtOnce <= OrderedChunkCopy.RequestsInFlight, $"{mostReadsAtOnce} reads at once");
    }

    [Fact]
    public async Task AFailedWrite_StopsTheCopy_AndIsWhatTheCallerSees()
    {
        var writes = 0;
        var failure = await Assert.ThrowsAsync<IOException>(async () => await OrderedChunkCopy.RunAsync(
            100,
            16,
            (i, buffer, token) => ValueTask.CompletedTask,
            (i, buffer, token) =>
            {
                Interlocked.Increment(ref writes);
                return i == 3 ? throw new IOException("chunk 3") : ValueTask.CompletedTask;
            },
            Ct));

        Assert.Equal("chunk 3", failure.Message);
        Assert.Equal(4, writes);
    }

    [Fact]
    public async Task NoChunks_CallsNothing()
    {
        var calls = 0;
        await OrderedChunkCopy.RunAsync(0, 16, (_, _, _) => { calls++; return ValueTask.CompletedTask; }, (_, _, _) => { calls++; return ValueTask.CompletedTask; }, Ct);
        Assert.Equal(0, calls);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
        {
            if (Interlocked.CompareExchange(ref target, value, seen) == seen)
            {
                return;
            }
        }
    }
}
