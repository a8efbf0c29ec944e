using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// Copies the guest content of one image into a target that already reads as something (its
/// backing file, <c>qemu-img convert -B</c>, or its old content), writing only the target
/// clusters whose content differs. The target then reads exactly as the source, whatever its
/// backing file holds.
/// </summary>
/// <remarks>
/// qemu-img convert -B skips every range the source's top image does not allocate, trusting the
/// caller that the new backing file holds what the source's backing file holds, and writes
/// every range the top allocates without looking at the target. Here that shortcut is taken
/// only when it is known to hold (<c>sourceSharesBacking</c>: the source's backing file is the
/// target's): then only the top's own allocation is asked for (the layers below are never
/// consulted) and its ranges are copied as qemu-img copies them. Everywhere else the two
/// contents are compared, so the target is right even for a backing file that differs, and
/// smaller where they agree.
/// </remarks>
public static class DifferenceCopy
{
    /// <summary>Bytes compared per step (a multiple of every cluster size up to 2 MiB); each worker's buffer holds a source and a target chunk.</summary>
    private const int ChunkSize = 2 << 20;

    /// <param name="sourceSharesBacking">The source's top image sits on the very image the target reads through, so ranges the top does not allocate already read the same in the target.</param>
    /// <exception cref="ArgumentException">The target is smaller than the source.</exception>
    public static async ValueTask CopyAsync(IBlockImage source, IBlockImage target, bool sourceSharesBacking, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        if (target.VirtualSize < source.VirtualSize)
        {
            throw new ArgumentException("the target is smaller than the source", nameof(target));
        }

        var granularity = target.AllocationGranularity;
        var chunks = new List<(long Offset, long End, bool Zero)>();
        for (long at = 0; at < source.VirtualSize;)
        {
            var extents = sourceSharesBacking && source is Qcow2Image top
                ? await top.GetExtentsAsync(at, source.VirtualSize - at, layers: 1, cancellationToken).ConfigureAwait(false)
                : await source.GetExtentsAsync(at, source.VirtualSize - at, cancellationToken).ConfigureAwait(false);
            foreach (var e in extents)
            {
                at = e.End;
                if (sourceSharesBacking && e.Depth != 1)
                {
                    continue;
                }

                if (sourceSharesBacking && (e.Kind & ExtentKind.Zero) != 0 && e.Offset % granularity == 0 && (e.End % granularity == 0 || e.End == source.VirtualSize))
                {
                    // Whole target clusters the top reads as zeroes: no need to read them.
                    chunks.Add((e.Offset, e.End, Zero: true));
                    continue;
                }

                // Whole target clusters, so one decision covers each cluster.
                var start = e.Offset / granularity * granularity;
                var end = Math.Min(source.VirtualSize, (e.End + granularity - 1) / granularity * granularity);
                for (var offset = start; offset < end;)
                {
                    var n = Math.Min(ChunkSize, end - offset);
                    chunks.Add((offset, offset + n, Zero: false));
                    offset += n;
                }
            }
        }

        // Chunks are read (source, and target when comparing) while earlier ones are written,
        // in offset order. Two chunks can share a target cluster when the source's extents are
        // not cluster aligned; both then write that cluster from the source, so it ends right
        // whichever read of the target came first.
        await OrderedChunkCopy.RunAsync(
            chunks.Count,
            2 * ChunkSize,
            async (i, buffer, token) =>
            {
                var (offset, end, zero) = chunks[i];
                if (!zero)
                {
                    var n = (int)(end - offset);
                    await source.ReadAsync(offset, buffer[..n], token).ConfigureAwait(false);
                    if (!sourceSharesBacking)
                    {
                        await target.ReadAsync(offset, buffer.Slice(ChunkSize, n), token).ConfigureAwait(false);
                    }
                }
            },
            async (i, buffer, token) =>
            {
                var (offset, end, zero) = chunks[i];
                if (zero)
                {
                    await target.WriteZeroesAsync(offset, end - offset, WriteFlags.None, token).ConfigureAwait(false);
                    return;
                }

                var n = (int)(end - offset);
                await WriteDifferencesAsync(target, offset, buffer[..n], buffer.Slice(ChunkSize, n), compare: !sourceSharesBacking, granularity, token).ConfigureAwait(false);
            },
            cancellationToken).ConfigureAwait(false);

        await target.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <param name="compare">Write only the clusters where <paramref name="targetData"/> differs; false writes every cluster (a range the source's top allocates over the target's own backing file).</param>
    private static async ValueTask WriteDifferencesAsync(IBlockImage target, long offset, Memory<byte> sourceData, Memory<byte> targetData, bool compare, int granularity, CancellationToken cancellationToken)
    {
        bool Same(int from, int to) => compare && sourceData.Span[from..to].SequenceEqual(targetData.Span[from..to]);
        var at = 0;
        while (at < sourceData.Length)
        {
            // A run of differing clusters, all data or all zeroes, in one request.
            var end = Math.Min(sourceData.Length, at + granularity);
            if (Same(at, end))
            {
                at = end;
                continue;
            }

            var zero = ZeroDetection.IsZero(sourceData.Span[at..end]);
            while (end < sourceData.Length)
            {
                var next = Math.Min(sourceData.Length, end + granularity);
                if (Same(end, next) || zero != ZeroDetection.IsZero(sourceData.Span[end..next]))
                {
                    break;
                }

                end = next;
            }

            if (zero)
            {
                await target.WriteZeroesAsync(offset + at, end - at, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await target.WriteAsync(offset + at, sourceData[at..end], WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }

            at = end;
        }
    }
}
