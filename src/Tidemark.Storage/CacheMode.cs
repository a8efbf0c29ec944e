namespace Tidemark.Storage;

/// <summary>How flushes reach the disk, in the words of QEMU's <c>cache=</c> option.</summary>
public enum CacheMode
{
    /// <summary>Writes go through the page cache; a flush is an fsync (QEMU's default, "writeback").</summary>
    Writeback,

    /// <summary>
    /// Flushes never fsync ("unsafe", what <c>qemu-img convert</c> uses for its target by default).
    /// Metadata is still written in crash-safe order, so a killed process leaves a consistent
    /// image; only a power loss can lose what the page cache held.
    /// </summary>
    Unsafe,
}
