namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>Why a persistent-bitmap operation failed.</summary>
public enum Qcow2BitmapError
{
    /// <summary>The bitmaps header extension breaks formats.md §2.1.</summary>
    BadExtension,

    /// <summary>The bitmap directory or one of its entries breaks formats.md §2.2.</summary>
    BadDirectory,

    /// <summary>A bitmap table entry or its size breaks formats.md §2.3.</summary>
    BadTable,

    /// <summary>The bitmap was found IN_USE at open: it may have missed writes and is never used as data (formats.md §2.7).</summary>
    Inconsistent,

    /// <summary>No bitmap of that name.</summary>
    NotFound,

    /// <summary>A bitmap of that name already exists.</summary>
    AlreadyExists,

    /// <summary>The name is empty or longer than 1023 UTF-8 bytes.</summary>
    BadName,

    /// <summary>The granularity is not a power of two from 512 B to 2 GiB.</summary>
    BadGranularity,

    /// <summary>The bitmap would exceed QEMU's limits (data size, count, directory size; formats.md §2.5).</summary>
    TooLarge,

    /// <summary>The image is open read-only.</summary>
    ReadOnly,

    /// <summary>The image cannot hold persistent bitmaps (qcow2 v2).</summary>
    Unsupported,

    /// <summary>The two bitmaps cover different disk sizes.</summary>
    SizeMismatch,
}

/// <summary>
/// A persistent dirty bitmap could not be loaded, stored or changed. <see cref="Reason"/> says
/// why; the message names the bitmap and, for on-disk damage, the field and host offset.
/// </summary>
public sealed class Qcow2BitmapException : IOException
{
    public Qcow2BitmapException(Qcow2BitmapError reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    public Qcow2BitmapException()
        : this(Qcow2BitmapError.BadDirectory, "bad persistent bitmap")
    {
    }

    public Qcow2BitmapException(string message)
        : this(Qcow2BitmapError.BadDirectory, message)
    {
    }

    public Qcow2BitmapException(string message, Exception innerException)
        : base(message, innerException)
    {
        Reason = Qcow2BitmapError.BadDirectory;
    }

    /// <summary>What went wrong.</summary>
    public Qcow2BitmapError Reason { get; }

    /// <summary>QEMU's words for using an inconsistent bitmap, with its hint (formats.md §2.7).</summary>
    internal static Qcow2BitmapException InconsistentBitmap(string name) =>
        new(Qcow2BitmapError.Inconsistent, $"Bitmap '{name}' is inconsistent and cannot be used; try 'tidemark image bitmap --remove' to delete it from disk");

    internal static Qcow2BitmapException Missing(string name) =>
        new(Qcow2BitmapError.NotFound, $"Dirty bitmap '{name}' not found");
}
