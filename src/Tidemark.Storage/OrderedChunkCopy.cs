namespace Tidemark.Storage;

/// <summary>
/// Runs a copy of numbered chunks with several of them in flight: each chunk is read (in any
/// order, up to <see cref="RequestsInFlight"/> at once) and then written strictly in chunk
/// order. Used where the reads come from other images than the writes (commit, convert -B).
/// </summary>
/// <remarks>
/// One chunk at a time leaves every read waiting for the previous write and the other way
/// round; each await also hops threads, which on a busy machine waits for a core each time.
/// QEMU's commit (a mirror job) keeps up to 16 requests going and qemu-img convert 8; with the
/// reads overlapping the writes, those waits overlap too. The writes stay in order because a
/// qcow2 target allocates host clusters as it is written: guest order keeps the new data
/// contiguous (as qemu-img convert without -W does), and a qcow2 image takes one write at a
/// time anyway.
/// </remarks>
internal static class OrderedChunkCopy
{
    /// <summary>Chunks read at once (qemu-img convert's default of 8 coroutines).</summary>
    public const int RequestsInFlight = 8;

    /// <summary>Runs <paramref name="read"/> then <paramref name="write"/> for chunks 0 to <paramref name="count"/> - 1.</summary>
    /// <param name="bufferSize">Bytes of each worker's buffer, handed to both steps.</param>
    /// <param name="read">Fills the buffer for a chunk; runs concurrently with other chunks' reads and with writes.</param>
    /// <param name="write">Writes a chunk from the buffer its read filled; called for chunk i only after chunk i - 1's write completed.</param>
    /// <param name="requestsInFlight">Chunks read at once, each with its own buffer.</param>
    /// <remarks>The first failure cancels the other workers and is what this throws.</remarks>
    public static async ValueTask RunAsync(int count, int bufferSize, Func<int, Memory<byte>, CancellationToken, ValueTask> read, Func<int, Memory<byte>, CancellationToken, ValueTask> write, CancellationToken cancellationToken, int requestsInFlight = RequestsInFlight)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(requestsInFlight);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return;
        }

        var next = -1;
        var written = new TaskCompletionSource[count];
        for (var i = 0; i < count; i++)
        {
            written[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = new Task[Math.Min(requestsInFlight, count)];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(() => CopyChunksAsync(failed.Token), failed.Token);
        }

        // A worker that fails cancels the others; their tasks end cancelled, not faulted, so
        // Task.WhenAll surfaces the failure itself.
        await Task.WhenAll(workers).ConfigureAwait(false);

        async Task CopyChunksAsync(CancellationToken token)
        {
            // Not zeroed: every step reads only what its own read filled (8 workers of a safe
            // rebase hold 32 MiB, and clearing them cost more CPU than comparing the data).
            var buffer = GC.AllocateUninitializedArray<byte>(bufferSize);
            try
            {
                for (var i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
                {
                    await read(i, buffer, token).ConfigureAwait(false);
                    if (i > 0)
                    {
                        await written[i - 1].Task.WaitAsync(token).ConfigureAwait(false);
                    }

                    await write(i, buffer, token).ConfigureAwait(false);
                    written[i].SetResult();
                }
            }
            catch
            {
                // Stop the other workers (they may be waiting for this chunk's turn).
                await failed.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }
    }
}
