using Tidemark.Formats;

namespace Tidemark.Engine.Backups;

/// <summary>Why a backup job could not begin, or why it ended without completing.</summary>
public enum BackupErrorReason
{
    /// <summary>No disk of the document is backed up: "no disks selected for backup".</summary>
    NoDisksSelected,

    /// <summary>A backed-up disk has no running image: "no disk named '%s'".</summary>
    NoSuchDisk,

    /// <summary>A store exists and reuse-external was not asked for: "store '%s' for backup of '%s' exists".</summary>
    StoreExists,

    /// <summary>A store cannot be created or opened: "failed to create image file '%s'".</summary>
    StoreCreationFailed,

    /// <summary>A store's file cannot be created (a system error): "failed to create image file '%s': strerror".</summary>
    StoreFileNotCreated,

    /// <summary>A store or server setting Tidemark does not implement (named in the message).</summary>
    Unsupported,

    /// <summary>A TLS server was asked for without a certificate directory: "backup TLS directory not configured".</summary>
    TlsNotConfigured,

    /// <summary>The pull NBD server cannot listen where the document says.</summary>
    ServerFailed,

    /// <summary>
    /// The TCP address of the pull NBD server cannot be bound (a port in use): libvirt passes on
    /// QEMU's words, "unable to execute QEMU command 'nbd-server-start': Failed to find an
    /// available port: Address already in use".
    /// </summary>
    ServerAddressRefused,

    /// <summary>
    /// A reused store (reuse-external) cannot be opened as its format: libvirt passes on QEMU's
    /// words, "unable to execute QEMU command 'blockdev-add': Image is not in qcow2 format".
    /// </summary>
    StoreNotOpened,

    /// <summary>
    /// A reused file store whose size is not the disk's: libvirt passes on QEMU's words,
    /// "unable to execute QEMU command 'transaction': Source and target image have different sizes".
    /// </summary>
    StoreSizeDiffers,

    /// <summary>
    /// The server's fd group is not associated with the domain, or does not hold exactly one
    /// descriptor: "file descriptor group '%s' was not associated with the domain".
    /// </summary>
    UnusableFdGroup,

    /// <summary>
    /// Another process writes a disk to back up (a shareable raw disk another VM has open):
    /// its writes would bypass copy-before-write, so no instant can be kept. libvirt passes on
    /// QEMU's words, "unable to execute QEMU command 'transaction': Could not replace node:
    /// Failed to get shared "write" lock".
    /// </summary>
    DiskWrittenElsewhere,

    /// <summary>Copying a cluster's point-in-time content aside failed (the failure policy decides who sees it).</summary>
    CopyBeforeWriteFailed,

    /// <summary>Reading the live image or writing a push target failed.</summary>
    CopyFailed,

    /// <summary>The job has ended (failed or aborted); its point-in-time view can no longer be read.</summary>
    JobEnded,
}

/// <summary>
/// The backup job's one exception family: a <see cref="BackupErrorReason"/>, the libvirt error
/// code a client sees, and libvirt's message text where libvirt has one (spec §6.7, §9).
/// </summary>
public sealed class BackupJobException : Exception
{
    public BackupJobException(BackupErrorReason reason, string detail, Exception? innerException = null)
        : base(LibvirtErrorPrefix.Format(CodeOf(reason), detail), innerException)
    {
        Reason = reason;
        Detail = detail;
    }

    /// <summary>What went wrong.</summary>
    public BackupErrorReason Reason { get; }

    /// <summary>The libvirt error code (<c>VIR_ERR_*</c>) clients see.</summary>
    public LibvirtErrorCode Code => CodeOf(Reason);

    /// <summary>The message without libvirt's prefix.</summary>
    public string Detail { get; }

    /// <summary>The libvirt error code of each reason, in one table (as the qemu driver reports them, spec §6.7).</summary>
    public static LibvirtErrorCode CodeOf(BackupErrorReason reason) => reason switch
    {
        BackupErrorReason.NoDisksSelected => LibvirtErrorCode.ConfigUnsupported,
        BackupErrorReason.NoSuchDisk => LibvirtErrorCode.InvalidArg,
        BackupErrorReason.StoreExists => LibvirtErrorCode.InvalidArg,
        BackupErrorReason.StoreCreationFailed => LibvirtErrorCode.OperationFailed,
        BackupErrorReason.StoreFileNotCreated => LibvirtErrorCode.SystemError,
        BackupErrorReason.Unsupported => LibvirtErrorCode.ConfigUnsupported,
        BackupErrorReason.TlsNotConfigured => LibvirtErrorCode.OperationInvalid,
        BackupErrorReason.ServerFailed => LibvirtErrorCode.OperationFailed,
        BackupErrorReason.ServerAddressRefused => LibvirtErrorCode.InternalError,
        BackupErrorReason.StoreNotOpened => LibvirtErrorCode.InternalError,
        BackupErrorReason.StoreSizeDiffers => LibvirtErrorCode.InternalError,
        BackupErrorReason.UnusableFdGroup => LibvirtErrorCode.InvalidArg,
        BackupErrorReason.DiskWrittenElsewhere => LibvirtErrorCode.InternalError,
        BackupErrorReason.CopyBeforeWriteFailed => LibvirtErrorCode.OperationFailed,
        BackupErrorReason.CopyFailed => LibvirtErrorCode.OperationFailed,
        BackupErrorReason.JobEnded => LibvirtErrorCode.OperationInvalid,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };
}
