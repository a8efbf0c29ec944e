using System.Buffers;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Nbd;

/// <summary>
/// Serves a storage-layer <see cref="DirtyBitmap"/> (a qcow2 persistent bitmap, a merged
/// incremental map) as <c>qemu:dirty-bitmap:NAME</c>. The bitmap is read live: a bit set by a
/// concurrent write shows from the next block-status request on.
/// </summary>
public sealed class DirtyBitmapSource : IDirtyBitmapSource
{
    /// <summary>
    /// Extents returned per call, 4096: bounds the list one request builds; the server asks again
    /// from where it ends, up to its own per-reply limit.
    /// </summary>
    private const int MaxExtentsPerCall = 4096;

    private readonly DirtyBitmap _bitmap;

    public DirtyBitmapSource(string name, DirtyBitmap bitmap)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(bitmap);
        Name = name;
        _bitmap = bitmap;
    }

    public string Name { get; }

    public ValueTask<IReadOnlyList<DirtyExtent>> GetDirtyExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();

        // One scan under one bitmap lock into a buffer of the cap, rather than the enumerator's
        // growing batches; the copy out is sized to what was found.
        var runs = ArrayPool<BitmapExtent>.Shared.Rent(MaxExtentsPerCall);
        try
        {
            var count = _bitmap.GetExtents(offset, length, dirtyOnly: false, runs.AsSpan(0, MaxExtentsPerCall));
            var result = new DirtyExtent[count];
            for (var i = 0; i < count; i++)
            {
                result[i] = new DirtyExtent(runs[i].Offset, runs[i].Length, runs[i].Dirty);
            }

            return ValueTask.FromResult<IReadOnlyList<DirtyExtent>>(result);
        }
        finally
        {
            ArrayPool<BitmapExtent>.Shared.Return(runs);
        }
    }
}
