namespace Tidemark.Storage;

/// <summary>
/// A backing chain stated apart from the images' headers: libvirt's <c>&lt;backingStore&gt;</c>
/// in a domain's XML, which libvirt hands to QEMU in place of what the headers name
/// (formatdomain, "backingStore"; the blockdev "backing" option). An image opened with one
/// reads through the stated files, in the stated formats, and never probes them.
/// </summary>
/// <param name="Path">The backing file; null when the image above has none (an empty <c>&lt;backingStore/&gt;</c>).</param>
/// <param name="Format">Its format.</param>
/// <param name="Below">What is stated of its own backing file; null to take that from its header.</param>
public sealed record StatedBacking(string? Path, ImageFormat Format, StatedBacking? Below)
{
    /// <summary>No backing file: the image above reads its unallocated clusters as zeroes, whatever its header names.</summary>
    public static StatedBacking None { get; } = new(null, ImageFormat.Raw, null);
}
