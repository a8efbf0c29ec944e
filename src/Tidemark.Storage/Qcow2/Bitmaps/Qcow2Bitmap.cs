using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// One named dirty bitmap of an open qcow2 image: persistent (stored in the image at clean
/// close) or transient (lives only while the image is open), enabled (recording every write)
/// or disabled, consistent or <see cref="Inconsistent"/>.
/// </summary>
/// <remarks>
/// The <see cref="Enabled"/> flag is changed only by <see cref="Qcow2BitmapSet"/>, which also
/// decides which bitmaps record writes.
/// </remarks>
public sealed class Qcow2Bitmap
{
    private DirtyBitmap? _bitmap;

    internal Qcow2Bitmap(string name, int granularityBits, bool enabled, bool persistent, DirtyBitmap? bitmap)
    {
        Name = name;
        GranularityBits = granularityBits;
        Enabled = enabled;
        Persistent = persistent;
        _bitmap = bitmap;
    }

    /// <summary>The bitmap's name, unique in its image.</summary>
    public string Name { get; }

    /// <summary>log2 of <see cref="Granularity"/>.</summary>
    public int GranularityBits { get; }

    /// <summary>Bytes per bit.</summary>
    public long Granularity => 1L << GranularityBits;

    /// <summary>True when it records writes (the AUTO flag on disk).</summary>
    public bool Enabled { get; internal set; }

    /// <summary>True when it is stored in the image; false for a bitmap that lives only while the image is open.</summary>
    public bool Persistent { get; }

    /// <summary>
    /// True when the bitmap was found IN_USE at open: the program that had the image open did
    /// not store it, so it may have missed writes. Its bits are never used; it can only be
    /// removed (formats.md §2.7).
    /// </summary>
    public bool Inconsistent => _bitmap is null;

    /// <summary>
    /// The flags as <c>qemu-img info</c> shows them for the image when nobody has it open
    /// read-write (formats.md §2.9): IN_USE for an inconsistent bitmap, AUTO for an enabled
    /// one. (While an image is open read-write, every bitmap is IN_USE on disk.)
    /// </summary>
    public BitmapEntryFlags Flags => (Inconsistent ? BitmapEntryFlags.InUse : 0) | (Enabled ? BitmapEntryFlags.Auto : 0);

    /// <summary>The bits.</summary>
    /// <exception cref="StorageException">The bitmap is <see cref="Inconsistent"/>.</exception>
    public DirtyBitmap Bitmap => _bitmap ?? throw BitmapErrors.Inconsistent(Name);

    /// <summary>
    /// Replaces the bits with a bitmap covering <paramref name="newSize"/> bytes: the bits of the
    /// old size kept, the new area clean (QEMU's bdrv_dirty_bitmap_truncate when growing).
    /// </summary>
    internal void Resize(long newSize)
    {
        var old = Bitmap;
        var resized = new DirtyBitmap(newSize, old.Granularity);
        var data = new byte[(old.DataLength + 7) & ~7L];
        old.CopyDataTo(0, data);
        resized.OrData(0, data);
        _bitmap = resized;
    }
}
