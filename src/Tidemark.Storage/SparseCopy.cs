using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// Copies the guest content of one image into another, sparsely: ranges the source reports as
/// holes or zeroes are skipped, and data blocks that turn out to be all zero are not written
/// (the target must read as zeroes where nothing is written: a fresh image). Reads of the next
/// chunk overlap the write of the current one.
/// </summary>
public static class SparseCopy
{
    /// <summary>Bytes per read; a multiple of every cluster size up to 2 MiB.</summary>
    private const int ChunkSize = 2 << 20;

    /// <summary>Zero detection granularity for raw targets (a file system block).</summary>
    private const int RawZeroGranularity = 4096;

    /// <param name="compress">Write whole clusters compressed (the target must be a fresh qcow2 image).</param>
    /// <exception cref="ArgumentException">The target is smaller than the source, or compression was asked of a non-qcow2 target.</exception>
    public static async ValueTask CopyAsync(IBlockImage source, IBlockImage target, bool compress, CancellationToken cancellationToken = default)
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
        var ranges = await DataRangesAsync(source, cancellationToken).ConfigureAwait(false);
        var chunks = ranges.SelectMany(r => Split(r.Offset, r.End)).ToList();
        if (chunks.Count == 0)
        {
            return;
        }

        // Two buffers: the next chunk is read while the current one is written.
        var buffers = new[] { new byte[ChunkSize], new byte[ChunkSize] };
        var pending = ReadAsync(source, chunks[0], buffers[0], cancellationToken);
        for (var i = 0; i < chunks.Count; i++)
        {
            await pending.ConfigureAwait(false);
            var current = buffers[i % 2];
            if (i + 1 < chunks.Count)
            {
                pending = ReadAsync(source, chunks[i + 1], buffers[(i + 1) % 2], cancellationToken);
            }

            var (offset, length) = chunks[i];
            await WriteNonZeroAsync(target, qcow2, compress, offset, current.AsMemory(0, length), granularity, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task ReadAsync(IBlockImage source, (long Offset, int Length) chunk, byte[] buffer, CancellationToken cancellationToken)
        => await source.ReadAsync(chunk.Offset, buffer.AsMemory(0, chunk.Length), cancellationToken).ConfigureAwait(false);

    private static async ValueTask WriteNonZeroAsync(IBlockImage target, Qcow2Image? qcow2, bool compress, long offset, ReadOnlyMemory<byte> data, int granularity, CancellationToken cancellationToken)
    {
        // Runs of non-zero blocks, aligned to the target's granularity.
        var at = 0;
        while (at < data.Length)
        {
            var blockStart = (int)(((offset + at) / granularity * granularity) - offset);
            var blockEnd = Math.Min(data.Length, blockStart + granularity);
            if (data.Span[at..blockEnd].ContainsAnyExcept((byte)0))
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
                    if (!data.Span[runEnd..next].ContainsAnyExcept((byte)0))
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

    /// <summary>The source's ranges that may hold non-zero data, cluster aligned.</summary>
    private static async ValueTask<List<BlockExtent>> DataRangesAsync(IBlockImage source, CancellationToken cancellationToken)
    {
        var ranges = new List<BlockExtent>();
        for (long at = 0; at < source.VirtualSize;)
        {
            var extents = await source.GetExtentsAsync(at, source.VirtualSize - at, cancellationToken).ConfigureAwait(false);
            foreach (var e in extents)
            {
                if ((e.Kind & ExtentKind.Zero) == 0)
                {
                    if (ranges.Count > 0 && ranges[^1].End == e.Offset)
                    {
                        ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + e.Length };
                    }
                    else
                    {
                        ranges.Add(e);
                    }
                }

                at = e.End;
            }
        }

        return ranges;
    }
}
