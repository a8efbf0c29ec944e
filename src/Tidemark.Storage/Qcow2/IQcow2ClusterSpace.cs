namespace Tidemark.Storage.Qcow2;

/// <summary>
/// What the persistent-bitmap code (<c>Qcow2BitmapSet</c>) needs from an open qcow2 image: host
/// clusters with correct refcounts, raw metadata I/O, and the bitmaps header extension with
/// autoclear bit 0 (formats.md §2.1, §2.6). <c>Qcow2Image</c> implements it; the bitmap code
/// knows nothing else of the image's internals.
/// </summary>
/// <remarks>
/// Ordering is the caller's job (formats.md §2.6): bitmap tables and directory are written and
/// flushed before the header extension points at them, and clusters of an old directory are
/// freed only after the header no longer points there.
/// </remarks>
internal interface IQcow2ClusterSpace
{
    /// <summary>Cluster size in bytes (1 &lt;&lt; cluster_bits).</summary>
    int ClusterSize { get; }

    /// <summary>The guest-visible size; bitmaps cover exactly this many bytes.</summary>
    long VirtualSize { get; }

    /// <summary>False for images that cannot hold persistent bitmaps (qcow2 v2, formats.md §2.1).</summary>
    bool CanStoreBitmaps { get; }

    /// <summary>True when the image was opened read-only: nothing may be allocated or written.</summary>
    bool IsReadOnly { get; }

    /// <summary>
    /// The bitmaps header extension (type 0x23852875, 24 bytes) as found at open, or null when
    /// the image has none. When autoclear bit 0 was clear at open, the extension is stale and
    /// this is null as well (QEMU ignores such an extension, formats.md §2.1).
    /// </summary>
    ReadOnlyMemory<byte>? BitmapsExtension { get; }

    /// <summary>
    /// Allocates <paramref name="count"/> contiguous host clusters with refcount 1 and returns
    /// the host offset of the first. Their content is undefined until written.
    /// </summary>
    ValueTask<long> AllocateClustersAsync(int count, CancellationToken cancellationToken);

    /// <summary>Drops one reference from each of <paramref name="count"/> clusters at <paramref name="hostOffset"/>.</summary>
    ValueTask FreeClustersAsync(long hostOffset, int count, CancellationToken cancellationToken);

    /// <summary>Reads metadata bytes at a host offset (zeroes past end of file).</summary>
    ValueTask ReadMetadataAsync(long hostOffset, Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Writes metadata bytes at a host offset inside clusters this caller owns.</summary>
    ValueTask WriteMetadataAsync(long hostOffset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>fsync the image file (and its refcount changes) so what was written is durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Rewrites cluster 0's header extension area so that it carries <paramref name="extension"/>
    /// as the bitmaps extension (or none when null), sets autoclear bit 0 to
    /// <paramref name="bitmapsConsistent"/>, and flushes. Other extensions and unknown header
    /// fields are kept as they were. The header is written with a single pwrite, of the first
    /// page only whenever the old and new headers fit in it, so a killed process leaves one of
    /// the two, never a mix.
    /// </summary>
    ValueTask WriteBitmapsExtensionAsync(ReadOnlyMemory<byte>? extension, bool bitmapsConsistent, CancellationToken cancellationToken);
}
