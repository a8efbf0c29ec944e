namespace Tidemark.Backup.Run;

/// <summary>A half-open range of guest bytes [<see cref="Start"/>, <see cref="End"/>).</summary>
internal readonly record struct ByteRange(long Start, long End)
{
    public long Length => End - Start;

    /// <summary>Sorts, joins touching and overlapping ranges, and drops empty ones.</summary>
    public static List<ByteRange> Merge(IEnumerable<ByteRange> ranges)
    {
        var result = new List<ByteRange>();
        foreach (var r in ranges.Where(r => r.End > r.Start).OrderBy(r => r.Start))
        {
            if (result.Count > 0 && r.Start <= result[^1].End)
            {
                result[^1] = result[^1] with { End = Math.Max(result[^1].End, r.End) };
            }
            else
            {
                result.Add(r);
            }
        }

        return result;
    }

    /// <summary>The range widened to whole units of <paramref name="alignment"/>, clipped to <paramref name="size"/>.</summary>
    public ByteRange AlignOut(long alignment, long size) =>
        new(Start / alignment * alignment, Math.Min(size, (End + alignment - 1) / alignment * alignment));

    /// <summary>The whole units of <paramref name="alignment"/> inside the range (the image's short last unit counts as whole).</summary>
    public ByteRange AlignIn(long alignment, long size)
    {
        var start = (Start + alignment - 1) / alignment * alignment;
        var end = End == size ? End : End / alignment * alignment;
        return new ByteRange(start, Math.Max(start, end));
    }

    /// <summary><paramref name="ranges"/> minus <paramref name="holes"/>; both sorted and disjoint.</summary>
    public static List<ByteRange> Subtract(IReadOnlyList<ByteRange> ranges, IReadOnlyList<ByteRange> holes)
    {
        var result = new List<ByteRange>();
        var h = 0;
        foreach (var range in ranges)
        {
            var start = range.Start;
            while (h < holes.Count && holes[h].End <= start)
            {
                h++;
            }

            for (var i = h; i < holes.Count && holes[i].Start < range.End; i++)
            {
                if (holes[i].Start > start)
                {
                    result.Add(new ByteRange(start, holes[i].Start));
                }

                start = Math.Max(start, holes[i].End);
            }

            if (start < range.End)
            {
                result.Add(new ByteRange(start, range.End));
            }
        }

        return result;
    }

    /// <summary>The range cut into pieces of at most <paramref name="size"/> bytes, on multiples of it.</summary>
    public IEnumerable<ByteRange> Split(long size)
    {
        for (var at = Start; at < End;)
        {
            var next = Math.Min(End, ((at / size) + 1) * size);
            yield return new ByteRange(at, next);
            at = next;
        }
    }
}
