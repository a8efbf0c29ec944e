namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>Flags of a bitmap directory entry (formats.md §2.2).</summary>
[Flags]
public enum BitmapEntryFlags : uint
{
    None = 0,

    /// <summary>Not saved cleanly: set while an image is open read-write, so after a crash the bitmap is inconsistent.</summary>
    InUse = 1,

    /// <summary>Enabled ("recording"): every write to the image must set its bits.</summary>
    Auto = 2,

    /// <summary>
    /// The only bits QEMU 7.2 accepts. The spec's bit 2 (EXTRA_DATA_COMPATIBLE) is treated as
    /// reserved by QEMU, which refuses to open an image carrying it (iotest 242), so Tidemark
    /// refuses it too and never writes it.
    /// </summary>
    KnownMask = InUse | Auto,
}
