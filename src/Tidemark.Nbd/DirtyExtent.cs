namespace Tidemark.Nbd;

/// <summary>A run of bytes that are all dirty or all clean.</summary>
public readonly record struct DirtyExtent(long Offset, long Length, bool Dirty)
{
    public long End => Offset + Length;
}
