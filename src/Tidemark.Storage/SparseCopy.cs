using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// Copies the guest content of one image into another, sparsely: ranges the source reports as
/// holes or zeroes are skipped, and data blocks that turn out to be all zero are not written
/// (the target must read as zeroes where nothing is written: a fresh image). Several chunks
/// are read and written at once.
/// </summary>
public static class SparseCopy
{
    /// <summary>Bytes per read; a multiple of every cluster size up to 2 MiB.</summary>
    private const int ChunkSize = 2 << 20;

    /// <summary>Zero detection granularity for raw targets (a file system block).</summary>
    private const int RawZeroGranularity = 4096;

    /// <summary>Chunks read or written at once (qemu-img convert's default of 8 coroutines); 16 MiB of buffers.</summary>
    private const int RequestsInFlight = 8;

    /// <param name="compress">Write whole clusters compressed (the target must be a fresh qcow2 image).</param>
    /// <exception cref="ArgumentException">The target is smaller than the source, or compression was asked of a non-qcow2 target.</exception>
    public static ValueTask CopyAsync(IBlockImage source, IBlockImage target, bool compress, CancellationToken cancellationToken = default)
        => CopyAsync(source, target, compress, targetReadsZeroes: true, cancellationToken);

    /// <param name="compress">Write whole clusters compressed (the target must be a fresh qcow2 image).</param>
    /// <param name="targetReadsZeroes">
    /// The target reads as zeroes wherever nothing is written (a new image, or
    /// <c>qemu-img convert -n --target-is-zero</c>). When false (an existing target, <c>-n</c>),
    /// every range the source reads as zeroes is zeroed in the target too, as qemu-img convert
    /// does when the target has no zero initialisation.
    /// </param>
    /// <exception cref="ArgumentException">The target is smaller than the source, or compression was asked of a non-qcow2 target.</exception>
    public static async ValueTask CopyAsync(IBlockImage source, IBlockImage target, bool compress, bool targetReadsZeroes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        if (target.VirtualSize < source.VirtualSize)
        {
            throw new ArgumentException("the target is smaller than the source", nameof(target));
        }

        var qcow2 = target as Qcow2Image;
        if (compress && qcow2 is null)
        {
            throw new ArgumentException("compression needs a qcow2 target", nameof(target));
        }

        var granularity = qcow2?.ClusterSize ?? RawZeroGranularity;
        var ranges = await DataRangesAsync(source, granularity, cancellationToken).ConfigureAwait(false);
        if (!targetReadsZeroes)
        {
            // The gaps between the data ranges read as zeroes in the source.
            var at = 0L;
            foreach (var r in ranges.Append(new BlockExtent(source.VirtualSize, 0, ExtentKind.Data, 0)))
            {
                if (r.Offset > at)
                {
                    await target.WriteZeroesAsync(at, r.Offset - at, WriteFlags.MayUnmap, cancellationToken).ConfigureAwait(false);
                }

                at = Math.Max(at, r.End);
            }
        }

        var chunks = ranges.SelectMany(r => Split(r.Offset, r.End)).ToList();
        if (chunks.Count == 0)
        {
            return;
        }

        // Several chunks in flight, as qemu-img convert keeps 8 requests going: on a warm page
        // cache each read and write is a memory copy in the kernel, so overlapping them lets
        // every core copy. A qcow2 target gets its writes in guest order (host clusters are
        // allocated as they are written, so ordered writes keep the target's data contiguous,
        // as qemu-img convert does without -W); a raw target takes them in any order.
        var next = -1;
        var written = new TaskCompletionSource[chunks.Count];
        for (var i = 0; i < written.Length; i++)
        {
            written[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = new Task[Math.Min(RequestsInFlight, chunks.Count)];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(() => CopyChunksAsync(failed.Token), failed.Token);
        }

        // A worker that fails cancels the others; their tasks end cancelled, not faulted, so
        // Task.WhenAll surfaces the failure itself.
        await Task.WhenAll(workers).ConfigureAwait(false);

        async Task CopyChunksAsync(CancellationToken token)
        {
            var buffer = new byte[ChunkSize];
            try
            {
                for (var i = Interlocked.Increment(ref next); i < chunks.Count; i = Interlocked.Increment(ref next))
                {
                    var (offset, length) = chunks[i];
                    await source.ReadAsync(offset, buffer.AsMemory(0, length), token).ConfigureAwait(false);
                    if (qcow2 is not null && i > 0)
                    {
                        await written[i - 1].Task.WaitAsync(token).ConfigureAwait(false);
                    }

                    await WriteNonZeroAsync(target, qcow2, compress, targetReadsZeroes, offset, buffer.AsMemory(0, length), granularity, token).ConfigureAwait(false);
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

    private static async ValueTask WriteNonZeroAsync(IBlockImage target, Qcow2Image? qcow2, bool compress, bool targetReadsZeroes, long offset, ReadOnlyMemory<byte> data, int granularity, CancellationToken cancellationToken)
    {
        // Runs of non-zero blocks, aligned to the target's granularity.
        var at = 0;
        while (at < data.Length)
        {
            var blockStart = (int)(((offset + at) / granularity * granularity) - offset);
            var blockEnd = Math.Min(data.Length, blockStart + granularity);
            if (!ZeroDetection.IsZero(data.Span[at..blockEnd]))
            {
                if (compress)
                {
                    // Whole clusters only; the chunk is cluster aligned except at the image's end.
                    await qcow2!.WriteCompressedAsync(offset + at, data[at..blockEnd], cancellationToken).ConfigureAwait(false);
                    at = blockEnd;
                    continue;
                }

                var runEnd = blockEnd;
                while (runEnd < data.Length)
                {
                    var next = Math.Min(data.Length, runEnd + granularity);
                    if (ZeroDetection.IsZero(data.Span[runEnd..next]))
                    {
                        break;
                    }

                    runEnd = next;
                }

                await target.WriteAsync(offset + at, data[at..runEnd], WriteFlags.None, cancellationToken).ConfigureAwait(false);
                at = runEnd;
            }
            else
            {
                if (!targetReadsZeroes)
                {
                    await target.WriteZeroesAsync(offset + at, blockEnd - at, WriteFlags.MayUnmap, cancellationToken).ConfigureAwait(false);
                }

                at = blockEnd;
            }
        }
    }

    private static IEnumerable<(long Offset, int Length)> Split(long start, long end)
    {
        for (var at = start; at < end;)
        {
            var next = Math.Min(end, ((at / ChunkSize) + 1) * ChunkSize);
            yield return (at, (int)(next - at));
            at = next;
        }
    }

    /// <summary>
    /// The source's ranges that may hold non-zero data, widened to whole blocks of the target's
    /// <paramref name="granularity"/> (a source can report zeroes inside a cluster, where its
    /// file has a hole; the target writes whole clusters, compressed ones above all).
    /// </summary>
    private static async ValueTask<List<BlockExtent>> DataRangesAsync(IBlockImage source, int granularity, CancellationToken cancellationToken)
    {
        var ranges = new List<BlockExtent>();
        for (long at = 0; at < source.VirtualSize;)
        {
            var extents = await source.GetExtentsAsync(at, source.VirtualSize - at, cancellationToken).ConfigureAwait(false);
            foreach (var e in extents)
            {
                if ((e.Kind & ExtentKind.Zero) == 0)
                {
                    var start = e.Offset / granularity * granularity;
                    var end = Math.Min(source.VirtualSize, (e.End + granularity - 1) / granularity * granularity);
                    if (ranges.Count > 0 && ranges[^1].End >= start)
                    {
                        ranges[^1] = ranges[^1] with { Length = Math.Max(ranges[^1].End, end) - ranges[^1].Offset };
                    }
                    else
                    {
                        ranges.Add(e with { Offset = start, Length = end - start });
                    }
                }

                at = e.End;
            }
        }

        return ranges;
    }
}
