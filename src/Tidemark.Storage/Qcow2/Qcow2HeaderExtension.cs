namespace Tidemark.Storage.Qcow2;

/// <summary>
/// One header extension as stored after the header in cluster 0 (formats.md §1.3):
/// <c>u32 type | u32 length | data | zero padding to 8</c>. Unknown types are kept verbatim so a
/// header rewrite preserves them.
/// </summary>
internal sealed record Qcow2HeaderExtension(uint Type, ReadOnlyMemory<byte> Data)
{
    /// <summary>Type and length fields.</summary>
    public const int PrefixLength = 8;

    /// <summary>Bytes this extension occupies on disk, padding included.</summary>
    public int StoredLength => PrefixLength + ((Data.Length + 7) & ~7);
}
