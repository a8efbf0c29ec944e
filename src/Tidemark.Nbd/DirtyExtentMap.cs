namespace Tidemark.Nbd;

/// <summary>
/// A dirty-bitmap source held in memory as a sorted list of dirty ranges: for exports whose
/// dirty map is computed elsewhere (a merged incremental map, a map read from another server).
/// </summary>
public sealed class DirtyExtentMap : IDirtyBitmapSource
{
    // Sorted by offset, non-overlapping, non-adjacent (merged on construction).
    private readonly (long Offset, long End)[] _dirty;
    private readonly long _size;

    /// <param name="name">The bitmap name.</param>
    /// <param name="size">The export size: extents never run past it.</param>
    /// <param name="dirtyRanges">Dirty ranges, in any order; overlapping ranges are merged.</param>
    public DirtyExtentMap(string name, long size, IEnumerable<(long Offset, long Length)> dirtyRanges)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentNullException.ThrowIfNull(dirtyRanges);
        Name = name;
        _size = size;
        var merged = new List<(long Offset, long End)>();
        foreach (var (offset, length) in dirtyRanges.Where(r => r.Length > 0).OrderBy(r => r.Offset))
        {
            if (offset < 0 || offset + length > size)
            {
                throw new ArgumentOutOfRangeException(nameof(dirtyRanges), $"dirty range {offset}+{length} is outside the export (size {size})");
            }

            if (merged.Count > 0 && offset <= merged[^1].End)
            {
                merged[^1] = (merged[^1].Offset, Math.Max(merged[^1].End, offset + length));
            }
            else
            {
                merged.Add((offset, offset + length));
            }
        }

        _dirty = [.. merged];
    }

    public string Name { get; }

    public ValueTask<IReadOnlyList<DirtyExtent>> GetDirtyExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > _size)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"range {offset}+{length} is past the end ({_size})");
        }

        var end = offset + length;
        var result = new List<DirtyExtent>();
        var position = offset;

        // First range that ends after the offset.
        var lo = 0;
        var hi = _dirty.Length;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (_dirty[mid].End <= offset)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        for (var i = lo; i < _dirty.Length && position < end; i++)
        {
            var (start, stop) = _dirty[i];
            if (start > position)
            {
                var cleanEnd = Math.Min(start, end);
                result.Add(new DirtyExtent(position, cleanEnd - position, Dirty: false));
                position = cleanEnd;
            }

            if (position < end)
            {
                var dirtyEnd = Math.Min(stop, end);
                result.Add(new DirtyExtent(position, dirtyEnd - position, Dirty: true));
                position = dirtyEnd;
            }
        }

        if (position < end)
        {
            result.Add(new DirtyExtent(position, end - position, Dirty: false));
        }

        return ValueTask.FromResult<IReadOnlyList<DirtyExtent>>(result);
    }
}
