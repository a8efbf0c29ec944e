using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// Writes a qcow2 image's data, and that of the images between it and a base further down its
/// chain, into the base, as <c>qemu-img commit</c> does (an active commit job, then
/// qcow2_make_empty on the top unless -d or -b).
/// </summary>
/// <remarks>
/// What is copied is what QEMU's commit job copies (mirror_dirty_init with a base): every range
/// some layer above the base allocates, with the bytes of the topmost such layer, which are the
/// top's guest bytes there; ranges such a layer allocates as zeroes become zeroes in the base.
/// Each layer is opened by itself (its own data only), and the base read-write through its own
/// chain, so no image is open twice. The base's enabled dirty bitmaps record the writes, as
/// QEMU's do (the job writes through the block layer).
///
/// Crash safety, in order: (1) the base takes the data; every range written there is allocated
/// in a layer above it, so the top reads the same throughout, and the base's own metadata
/// follows its write-back order; (2) the base is flushed; (3) only then does the top lose its
/// clusters (<see cref="Qcow2Image.MakeEmptyAsync"/>), each one now reading the same bytes from
/// the base. A crash at any point leaves every image consistent (at worst leaked clusters) and
/// the top reading as before.
/// </remarks>
public static class ImageCommit
{
    /// <summary>Bytes read and written per step (<see cref="OrderedChunkCopy.RequestsInFlight"/> of them at once).</summary>
    private const int ChunkSize = 2 << 20;

    /// <summary>Commits <paramref name="path"/> into its backing file or into <paramref name="baseName"/>.</summary>
    /// <param name="baseName">A file of the chain below the top (taken relative to each overlay's directory, as QEMU does), or null for the top's backing file.</param>
    /// <param name="drop">Leave the top as it is (-d); always so when <paramref name="baseName"/> is given, as qemu-img does.</param>
    /// <exception cref="StorageException">The image has no backing file, the base is not in its chain, the chain loops or cannot be opened, or an image cannot be written.</exception>
    public static async ValueTask CommitAsync(string path, ImageFormat? format, string? baseName, bool drop, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var chain = await BackingChain.ReadAsync(path, format, stopAtMissing: false, cancellationToken).ConfigureAwait(false);
        int baseIndex;
        if (baseName is not null)
        {
            baseIndex = BackingChain.Find(chain, baseName);
            if (baseIndex < 0)
            {
                throw new StorageException(StorageErrorReason.BackingChain, $"Did not find '{baseName}' in the backing chain of '{path}'");
            }

            drop = true;
        }
        else
        {
            if (chain.Count < 2)
            {
                throw new StorageException(StorageErrorReason.BackingChain, "Image does not have a backing file");
            }

            baseIndex = 1;
        }

        var layers = new List<IBlockImage>();
        try
        {
            // The top read-write only when it is to be emptied afterwards.
            layers.Add(await OpenLayerAsync(chain[0], readOnly: drop, cancellationToken).ConfigureAwait(false));
            for (var i = 1; i < baseIndex; i++)
            {
                layers.Add(await OpenLayerAsync(chain[i], readOnly: true, cancellationToken).ConfigureAwait(false));
            }

            var segments = await SegmentsAsync(layers, cancellationToken).ConfigureAwait(false);
            await CommitSegmentsAsync(layers, chain[baseIndex], segments, cancellationToken).ConfigureAwait(false);
            if (!drop)
            {
                await ((Qcow2Image)layers[0]).MakeEmptyAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (var layer in layers)
            {
                await layer.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async ValueTask<IBlockImage> OpenLayerAsync(BackingLayer layer, bool readOnly, CancellationToken cancellationToken)
        => layer.Format == ImageFormat.Qcow2
            ? await Qcow2Image.OpenDetachedAsync(layer.Path, readOnly, cancellationToken).ConfigureAwait(false)
            : RawImage.Open(layer.Path, readOnly);

    private static async ValueTask CommitSegmentsAsync(List<IBlockImage> layers, BackingLayer baseLayer, List<Segment> segments, CancellationToken cancellationToken)
    {
        var size = layers[0].VirtualSize;
        if (baseLayer.Format == ImageFormat.Raw && DiskImage.FileLength(baseLayer.Path) < size)
        {
            // The commit job grows a smaller base to the top's size before copying.
            await RawImage.ResizeAsync(baseLayer.Path, size, cancellationToken).ConfigureAwait(false);
        }

        var target = await DiskImage.OpenAsync(baseLayer.Path, baseLayer.Format, readOnly: false, cancellationToken).ConfigureAwait(false);
        await using (target.ConfigureAwait(false))
        {
            if (target is Qcow2Image q && q.VirtualSize < size)
            {
                await q.ResizeAsync(size, cancellationToken).ConfigureAwait(false);
            }

            // Ranges the base does not allocate yet get clusters appended to its file, all made
            // durable by the flush below: start their writeback as they are written, so that
            // flush has little left to wait for (as a safe rebase does; only the flushes order
            // anything, so this changes no crash outcome).
            (target as Qcow2Image)?.WriteBehindNewClusters();

            // Each data segment in chunks of at most ChunkSize, read from its layer while
            // earlier chunks are written; the base takes them in offset order. Every range
            // written is allocated above the base, so the order of the writes does not matter
            // for what the top reads (step (1) above).
            var chunks = new List<Segment>();
            foreach (var segment in segments)
            {
                for (var at = segment.Start; at < segment.End;)
                {
                    var end = segment.Zero ? segment.End : Math.Min(segment.End, at + ChunkSize);
                    chunks.Add(segment with { Start = at, End = end });
                    at = end;
                }
            }

            await OrderedChunkCopy.RunAsync(
                chunks.Count,
                ChunkSize,
                async (i, buffer, token) =>
                {
                    var chunk = chunks[i];
                    if (!chunk.Zero)
                    {
                        await layers[chunk.Layer].ReadAsync(chunk.Start, buffer[..(int)(chunk.End - chunk.Start)], token).ConfigureAwait(false);
                    }
                },
                async (i, buffer, token) =>
                {
                    var chunk = chunks[i];
                    if (chunk.Zero)
                    {
                        await target.WriteZeroesAsync(chunk.Start, chunk.End - chunk.Start, WriteFlags.None, token).ConfigureAwait(false);
                    }
                    else
                    {
                        await target.WriteAsync(chunk.Start, buffer[..(int)(chunk.End - chunk.Start)], WriteFlags.None, token).ConfigureAwait(false);
                    }
                },
                cancellationToken).ConfigureAwait(false);

            // Step (2) of the order above: the base is durable before the top lets go.
            await target.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>A range of the top to commit, with the layer whose bytes it shows.</summary>
    private readonly record struct Segment(long Start, long End, int Layer, bool Zero);

    /// <summary>
    /// For every range some layer allocates, the topmost such layer, in offset order. Each layer
    /// is open by itself, so its extents at depth 1 are exactly what it allocates.
    /// </summary>
    private static async ValueTask<List<Segment>> SegmentsAsync(List<IBlockImage> layers, CancellationToken cancellationToken)
    {
        // Disjoint, sorted ranges already claimed by upper layers.
        var claimed = new List<(long Start, long End)>();
        var segments = new List<Segment>();
        for (var index = 0; index < layers.Count; index++)
        {
            var layer = layers[index];
            var allocated = new List<(long Start, long End, bool Zero)>();
            for (long at = 0; at < layer.VirtualSize;)
            {
                var extents = await layer.GetExtentsAsync(at, layer.VirtualSize - at, cancellationToken).ConfigureAwait(false);
                foreach (var e in extents)
                {
                    // A raw layer allocates all of itself (QEMU's raw driver reports everything allocated).
                    if (e.Depth == 1 || layer is RawImage)
                    {
                        allocated.Add((e.Offset, e.End, (e.Kind & ExtentKind.Zero) != 0));
                    }

                    at = e.End;
                }
            }

            foreach (var (start, end, zero) in allocated)
            {
                foreach (var (s, e) in Subtract(claimed, start, end))
                {
                    segments.Add(new Segment(s, e, index, zero));
                }
            }

            claimed = Union(claimed, allocated.Select(a => (a.Start, a.End)));
        }

        segments.Sort((a, b) => a.Start.CompareTo(b.Start));
        return segments;
    }

    /// <summary>The parts of start..end outside the sorted, disjoint <paramref name="ranges"/>.</summary>
    private static IEnumerable<(long Start, long End)> Subtract(List<(long Start, long End)> ranges, long start, long end)
    {
        // First range that ends after start (binary search on End, which is sorted too).
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (ranges[mid].End <= start)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        var at = start;
        for (var i = lo; i < ranges.Count && ranges[i].Start < end && at < end; i++)
        {
            if (ranges[i].Start > at)
            {
                yield return (at, ranges[i].Start);
            }

            at = Math.Max(at, ranges[i].End);
        }

        if (at < end)
        {
            yield return (at, end);
        }
    }

    private static List<(long Start, long End)> Union(List<(long Start, long End)> a, IEnumerable<(long Start, long End)> b)
    {
        var all = a.Concat(b).OrderBy(r => r.Start).ToList();
        var merged = new List<(long Start, long End)>(all.Count);
        foreach (var r in all)
        {
            if (merged.Count > 0 && merged[^1].End >= r.Start)
            {
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, r.End));
            }
            else
            {
                merged.Add(r);
            }
        }

        return merged;
    }
}
