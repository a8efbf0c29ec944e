namespace Tidemark.Storage.Bitmaps;

/// <summary>A run of bytes whose bits are all dirty or all clean.</summary>
/// <param name="Offset">Guest offset in bytes.</param>
/// <param name="Length">Length in bytes (positive).</param>
/// <param name="Dirty">True when written since the bitmap was created or last cleared.</param>
public readonly record struct BitmapExtent(long Offset, long Length, bool Dirty)
{
    public long End => Offset + Length;
}
