namespace Tidemark.Storage;

/// <summary>Why a storage operation was refused or failed.</summary>
public enum StorageErrorReason
{
    /// <summary>The file is not an image of the expected format (bad magic, wrong version).</summary>
    NotAnImage,

    /// <summary>A header field or header extension breaks the format's rules.</summary>
    InvalidHeader,

    /// <summary>The image needs a feature Tidemark does not implement (named in the message).</summary>
    UnsupportedFeature,

    /// <summary>Metadata (tables, refcounts) is inconsistent; the image is treated as corrupt.</summary>
    Corrupt,

    /// <summary>A size, count or offset exceeds a documented limit.</summary>
    LimitExceeded,

    /// <summary>The backing chain cannot be opened (missing file, loop, too deep, unknown format).</summary>
    BackingChain,

    /// <summary>Another process holds a conflicting lock on the image (QEMU's byte-range locks).</summary>
    Locked,

    /// <summary>The image was opened read-only, or is marked corrupt and refuses writes.</summary>
    ReadOnly,

    /// <summary>The request does not fit the image (creation options, unsupported combination).</summary>
    InvalidRequest,

    /// <summary>A dirty bitmap was found IN_USE at open: it may have missed writes, so it can only be removed (formats.md §2.7).</summary>
    BitmapInconsistent,

    /// <summary>No dirty bitmap of that name.</summary>
    BitmapNotFound,

    /// <summary>A dirty bitmap of that name already exists.</summary>
    BitmapExists,
}

/// <summary>
/// The one exception family of the storage layer: every refusal and every detected corruption
/// carries a <see cref="StorageErrorReason"/> and a message naming the file, field and offset.
/// Plain I/O errors from the operating system are left as <see cref="IOException"/>.
/// </summary>
public sealed class StorageException : Exception
{
    public StorageException(StorageErrorReason reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    public StorageException(StorageErrorReason reason, string message, Exception innerException)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public StorageException()
        : this(StorageErrorReason.Corrupt, "storage error")
    {
    }

    public StorageException(string message)
        : this(StorageErrorReason.Corrupt, message)
    {
    }

    public StorageException(string message, Exception innerException)
        : this(StorageErrorReason.Corrupt, message, innerException)
    {
    }

    /// <summary>What kind of failure this is.</summary>
    public StorageErrorReason Reason { get; }
}
