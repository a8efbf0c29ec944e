namespace Tidemark.Nbd;

/// <summary>
/// What the server asks of a dirty bitmap to answer <c>qemu:dirty-bitmap:NAME</c> block status
/// (formats.md §4.10). The storage layer's bitmaps and the engine's backup views implement it
/// through small adapters; the NBD layer knows nothing of how the bits are kept.
/// </summary>
public interface IDirtyBitmapSource
{
    /// <summary>The bitmap's name: the context is <c>qemu:dirty-bitmap:</c> + this name.</summary>
    string Name { get; }

    /// <summary>
    /// Describes the range starting at <paramref name="offset"/> as adjacent dirty/clean runs,
    /// the first starting at <paramref name="offset"/>, covering at least one byte and at most
    /// <paramref name="length"/> bytes (the caller asks again from where the list ends).
    /// </summary>
    ValueTask<IReadOnlyList<DirtyExtent>> GetDirtyExtentsAsync(long offset, long length, CancellationToken cancellationToken = default);
}
