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
        GC.KeepAlive(sink);
    }
}
