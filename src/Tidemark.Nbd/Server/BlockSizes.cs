namespace Tidemark.Nbd.Server;

/// <summary>The block sizes the server advertises (formats.md §4.7).</summary>
internal static class BlockSizes
{
    /// <summary>1: any byte-granular request is served (images handle read-modify-write).</summary>
    public const uint Minimum = 1;

    /// <summary>4096: the allocation unit of raw files; qemu-nbd advertises the same.</summary>
    public const uint Preferred = 4096;
}
