using Tidemark.Storage.Bitmaps;

namespace Tidemark.Bench.Bitmaps;

/// <summary>
/// <see cref="DirtyBitmap"/> on its own: scans and merges of 1 TiB bitmaps at 64 KiB (2^24
/// bits). QEMU has no way to time its in-memory HBitmap alone, so these rows stand by themselves.
/// </summary>
internal static class InMemoryRows
{
    private const long TiB = 1L << 40;

    public static IEnumerable<Row> Run()
    {
        var random = new Random(42);
        var empty = new DirtyBitmap(TiB);
        var sparse = new DirtyBitmap(TiB);
        for (var i = 0; i < 1000; i++)
        {
            sparse.SetRange(random.NextInt64(TiB), random.Next(1, 1 << 20));
        }

        var dense = new DirtyBitmap(TiB);
        for (var bit = 0L; bit < dense.BitCount; bit++)
        {
            if (random.Next(2) == 0)
            {
                dense.SetRange(bit << 16, 1);
            }
        }

        long sink = 0;
        yield return new Row("scan 1 TiB @64k, clean: dirty extents", Timing.Median(200, () => sink += empty.EnumerateDirtyExtents(0, TiB).Count()));
        yield return new Row($"scan 1 TiB @64k, {sparse.EnumerateDirtyExtents(0, TiB).Count()} dirty runs: dirty extents", Timing.Median(200, () => sink += sparse.EnumerateDirtyExtents(0, TiB).Count()));
        yield return new Row($"scan 1 TiB @64k, {sparse.EnumerateExtents(0, TiB).Count()} runs: all extents (NBD map)", Timing.Median(200, () => sink += sparse.EnumerateExtents(0, TiB).Count()));
        yield return new Row($"scan 1 TiB @64k, 50% random: {dense.EnumerateDirtyExtents(0, TiB).Count()} dirty extents", Timing.Median(5, () => sink += dense.EnumerateDirtyExtents(0, TiB).Count()));
        yield return new Row("merge 1 TiB @64k sparse into empty", Timing.Median(50, () => new DirtyBitmap(TiB).Merge(sparse)));
        yield return new Row("merge 1 TiB @64k 50% random into empty", Timing.Median(10, () => new DirtyBitmap(TiB).Merge(dense)));
        yield return new Row("merge 1 TiB @64k sparse into @1M (cross granularity)", Timing.Median(50, () => new DirtyBitmap(TiB, 1 << 20).Merge(sparse)));
        yield return new Row("merge 1 TiB @64k 50% random into @1M (cross granularity)", Timing.Median(3, () => new DirtyBitmap(TiB, 1 << 20).Merge(dense)));
        foreach (var count in new[] { 1, 10 })
        {
            yield return new Row($"mark {MarkedWrites:N0} random 4 KiB writes, {count} bitmap(s) of 2 GiB @64k", MarkWrites(count));
        }

        GC.KeepAlive(sink);
    }

    private const int MarkedWrites = 100_000;

    /// <summary>
    /// What tracking adds to every guest write: the engine's write path calls
    /// <see cref="DirtyBitmap.SetRange"/> once per recording bitmap (Qcow2BitmapSet.MarkDirty).
    /// Timed here without I/O, so the figure is the whole marking cost, which a guest write
    /// through NBD (tens of microseconds) then carries; the end-to-end rows of bench/engine/run
    /// are too noisy on a shared machine to resolve a few percent.
    /// </summary>
    private static TimeSpan MarkWrites(int bitmapCount)
    {
        const long size = 2L << 30;
        var bitmaps = Enumerable.Range(0, bitmapCount).Select(_ => new DirtyBitmap(size)).ToArray();
        var random = new Random(7);
        var offsets = Enumerable.Range(0, MarkedWrites).Select(_ => random.NextInt64(size >> 12) << 12).ToArray();
        return Timing.Median(21, () =>
        {
            foreach (var offset in offsets)
            {
                foreach (var bitmap in bitmaps)
                {
                    bitmap.SetRange(offset, 4096);
                }
            }
        });
    }
}
