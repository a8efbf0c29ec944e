using Tidemark.Formats;

namespace Tidemark.Engine;

/// <summary>
/// Why the engine refused or failed an operation. Each reason has one libvirt error code
/// (<see cref="EngineErrorReasons.CodeOf"/>); the detail text is libvirt's where libvirt has one
/// (spec §2.6, §4, §6 and the error catalogue).
/// </summary>
public enum EngineErrorReason
{
    /// <summary>"unsupported flags (0x%x) in function %s".</summary>
    UnsupportedFlags,

    /// <summary>Two flags that exclude each other, or one that requires another.</summary>
    ConflictingFlags,

    /// <summary>An fd group without descriptors: "nfds in virDomainFDAssociate must not be zero".</summary>
    NoFileDescriptors,

    /// <summary>"no domain with matching name '%s'" (or uuid, or id).</summary>
    NoSuchDomain,

    /// <summary>"domain '%s' already exists with uuid %s" / "domain '%s' is already defined with uuid %s".</summary>
    DomainExists,

    /// <summary>"domain is not running".</summary>
    DomainNotRunning,

    /// <summary>"name %s cannot contain '/'" and the names that would be a directory ("." and "..").</summary>
    InvalidDomainName,

    /// <summary>A rename the driver refuses: "cannot rename active domain", "cannot rename a transient domain".</summary>
    RenameRefused,

    /// <summary>Two disks on one target: "target '%s' duplicated for disk sources '%s' and '%s'".</summary>
    DuplicateDiskTarget,

    /// <summary>A disk attached to the persistent definition on a target it has: "target %s already exists".</summary>
    DiskTargetExists,

    /// <summary>A disk path or target the domain does not have: "disk '%s' was not found in the domain config".</summary>
    InvalidDiskPath,

    /// <summary>A disk without media: "disk '%s' does not have an associated source".</summary>
    DiskNotServed,

    /// <summary>A device to detach that the domain lacks: "disk %s not found", "no target device %s".</summary>
    DeviceMissing,

    /// <summary>An alias no device of the definition has: "no device found with alias %s" (an internal error in libvirt's words).</summary>
    NoDeviceWithAlias,

    /// <summary>A device kind Tidemark cannot attach or detach, or a disk its backup job uses: "live attach of device '%s' is not supported", "disk '%s' already in active block job".</summary>
    DeviceUnsupported,

    /// <summary>A resize of a drive without media or of a read-only disk: "can't resize empty or readonly disk '%s'".</summary>
    NotResizable,

    /// <summary>A live detach of a CD-ROM or floppy drive: "disk device type '%s' cannot be detached".</summary>
    NotDetachable,

    /// <summary>A VNC password longer than VNC's 8 characters: "VNC password is %zu characters long, only 8 permitted".</summary>
    VncPasswordTooLong,

    /// <summary>A transient disk that is read-only (a CD-ROM included): "transient disk '%s' must not be read-only".</summary>
    TransientDiskReadOnly,

    /// <summary>A checkpoint or backup of a transient disk: "block jobs are not supported on transient disk '%s'".</summary>
    TransientDiskBlockJob,

    /// <summary>A transient disk's overlay is there already at its start: "Overlay file '%s' for transient disk '%s' already exists".</summary>
    TransientOverlayExists,

    /// <summary>A shareable disk guests may write in a format other than raw: "shared access for disk '%s' requires use of supported storage format".</summary>
    SharedAccessUnsupported,

    /// <summary>
    /// A disk's error policies or copy-on-read that QEMU's device cannot take: "Invalid disk read
    /// error policy: 'enospace'", "copy_on_read is not compatible with read-only disk '%s'".
    /// </summary>
    DiskFrontendUnsupported,

    /// <summary>An IDE disk on a controller an i440FX machine does not have: "Only 1 IDE controller is supported" (an internal error in libvirt's words).</summary>
    TooManyIdeControllers,

    /// <summary>A disk to update that the running domain lacks: "disk '%s' not found" (an internal error in libvirt's words).</summary>
    UpdatedDiskMissing,

    /// <summary>An update of a running disk that would change more than its media: "cannot modify field '%s' of the disk".</summary>
    FixedDiskField,

    /// <summary>New media for a running drive that is not a CD-ROM or floppy: "disk source can be changed only in removable drives".</summary>
    MediaNotRemovable,

    /// <summary>What QEMU would refuse in the command libvirt sends it: "unable to execute QEMU command '%s': %s" (a disk's image locked at hotplug, a resize QEMU cannot make).</summary>
    MonitorCommandFailed,

    /// <summary>A rename to a name in use (libvirt's domain list refuses it): "domain with name '%s' already exists", "Can't rename domain to itself".</summary>
    DomainNameTaken,

    /// <summary>"domain is already running".</summary>
    DomainAlreadyRunning,

    /// <summary>"cannot delete inactive domain with %d checkpoints".</summary>
    InactiveDomainHasCheckpoints,

    /// <summary>"cannot undefine transient domain", "transient domains do not have any persistent config".</summary>
    TransientDomain,

    /// <summary>"cannot both keep and delete nvram" (undefine with NVRAM and KEEP_NVRAM).</summary>
    KeepAndDeleteNvram,

    /// <summary>A disk Tidemark cannot serve to the guest (a network or block source, an unknown format).</summary>
    UnsupportedDisk,

    /// <summary>An image is locked by another process (QEMU's "Failed to get "write" lock").</summary>
    ImageLocked,

    /// <summary>An image cannot be opened, read or written.</summary>
    ImageFailed,

    /// <summary>A disk's file cannot be opened at all (a system error): "Cannot access storage file '%s' (as uid:%u, gid:%u): strerror".</summary>
    ImageInaccessible,

    /// <summary>A backing file's format is not stored and the probed image has a backing file of its own: "format of backing image '%s' of image '%s' was not specified in the image metadata …".</summary>
    UnstatedBackingFormat,

    /// <summary>A backing chain loops or is deeper than libvirt walks: "backing store for %s is self-referential or too deeply nested".</summary>
    ChainTooDeep,

    /// <summary>"no domain checkpoint with matching name '%s'".</summary>
    NoSuchCheckpoint,

    /// <summary>"checkpoint '%s' does not have a parent".</summary>
    NoParent,

    /// <summary>"domain moment %s already exists".</summary>
    CheckpointExists,

    /// <summary>"parent %s for moment %s not found".</summary>
    MissingParent,

    /// <summary>"parent %s would create cycle to %s".</summary>
    ParentCycle,

    /// <summary>"bitmap for disk '%s' must match checkpoint name '%s'".</summary>
    BitmapNameMismatch,

    /// <summary>"checkpoint for disk %s unsupported for storage type %s".</summary>
    CheckpointStorageType,

    /// <summary>"missing or broken bitmap '%s' for disk '%s'".</summary>
    BrokenBitmap,

    /// <summary>"missing bitmap name for disk '%s' of checkpoint '%s'".</summary>
    MissingBitmapName,

    /// <summary>"bitmap '%s' not found in backing chain of '%s'".</summary>
    BitmapNotInChain,

    /// <summary>
    /// A disk already has a bitmap of the new checkpoint's name: QEMU refuses the whole
    /// transaction, and libvirt passes its words on ("unable to execute QEMU command
    /// 'transaction': Bitmap already exists: %s").
    /// </summary>
    BitmapExists,

    /// <summary>
    /// A checkpoint name too long for a qcow2 bitmap (over 1023 bytes): QEMU refuses the
    /// transaction ("Can't make bitmap '%s' persistent in '%s': Name length exceeds maximum (1023
    /// characters)"), and libvirt passes its words on.
    /// </summary>
    BitmapNameTooLong,

    /// <summary>"unable to save metadata for checkpoint %s" and other state-directory failures.</summary>
    StateWriteFailed,

    /// <summary>"cannot perform disk backup for inactive domain".</summary>
    BackupOfInactiveDomain,

    /// <summary>
    /// "cannot create checkpoint for inactive domain": libvirt's answer for every inactive
    /// domain, Tidemark's only for one whose name leaves no room for the creation's record.
    /// </summary>
    CheckpointOfInactiveDomain,

    /// <summary>
    /// A backup begun while another runs, which did not end within libvirt's wait for the
    /// domain's job: "cannot acquire state change lock (held by monitor=%s)".
    /// </summary>
    JobWaitTimeout,

    /// <summary>"no domain backup job present".</summary>
    NoBackupJob,

    /// <summary>"no job is active on the domain".</summary>
    NoActiveJob,

    /// <summary>"Checkpoint '%s' for incremental backup of disk '%s' not found".</summary>
    NoIncrementalCheckpoint,
}

/// <summary>The libvirt error code of each <see cref="EngineErrorReason"/>, in one table.</summary>
public static class EngineErrorReasons
{
    /// <summary>The libvirt error code under which libvirt reports <paramref name="reason"/>.</summary>
    public static LibvirtErrorCode CodeOf(EngineErrorReason reason) => reason switch
    {
        EngineErrorReason.UnsupportedFlags => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.ConflictingFlags => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.NoFileDescriptors => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.NoSuchDomain => LibvirtErrorCode.NoDomain,
        EngineErrorReason.DomainExists => LibvirtErrorCode.OperationFailed,
        EngineErrorReason.DomainNotRunning => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.InvalidDomainName => LibvirtErrorCode.XmlError,
        EngineErrorReason.RenameRefused => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.DuplicateDiskTarget => LibvirtErrorCode.XmlError,
        EngineErrorReason.InvalidDiskPath => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.DiskNotServed => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.DiskTargetExists => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.DeviceMissing => LibvirtErrorCode.DeviceMissing,
        EngineErrorReason.NoDeviceWithAlias => LibvirtErrorCode.InternalError,
        EngineErrorReason.DeviceUnsupported => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.VncPasswordTooLong => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.NotResizable => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.NotDetachable => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.SharedAccessUnsupported => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.DiskFrontendUnsupported => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.TransientDiskReadOnly => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.TransientDiskBlockJob => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.TransientOverlayExists => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.TooManyIdeControllers => LibvirtErrorCode.InternalError,
        EngineErrorReason.UpdatedDiskMissing => LibvirtErrorCode.InternalError,
        EngineErrorReason.FixedDiskField => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.MediaNotRemovable => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.MonitorCommandFailed => LibvirtErrorCode.InternalError,
        EngineErrorReason.DomainNameTaken => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.DomainAlreadyRunning => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.InactiveDomainHasCheckpoints => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.TransientDomain => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.KeepAndDeleteNvram => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.UnsupportedDisk => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.ImageLocked => LibvirtErrorCode.OperationFailed,
        EngineErrorReason.ImageFailed => LibvirtErrorCode.OperationFailed,
        EngineErrorReason.ImageInaccessible => LibvirtErrorCode.SystemError,
        EngineErrorReason.UnstatedBackingFormat => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.ChainTooDeep => LibvirtErrorCode.InternalError,
        EngineErrorReason.NoSuchCheckpoint => LibvirtErrorCode.NoDomainCheckpoint,
        EngineErrorReason.NoParent => LibvirtErrorCode.NoDomainCheckpoint,
        EngineErrorReason.CheckpointExists => LibvirtErrorCode.OperationFailed,
        EngineErrorReason.MissingParent => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.ParentCycle => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.BitmapNameMismatch => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.CheckpointStorageType => LibvirtErrorCode.ConfigUnsupported,
        EngineErrorReason.BrokenBitmap => LibvirtErrorCode.CheckpointInconsistent,
        EngineErrorReason.MissingBitmapName => LibvirtErrorCode.InvalidArg,
        EngineErrorReason.BitmapNotInChain => LibvirtErrorCode.InternalError,
        EngineErrorReason.BitmapExists => LibvirtErrorCode.InternalError,
        EngineErrorReason.BitmapNameTooLong => LibvirtErrorCode.InternalError,
        EngineErrorReason.StateWriteFailed => LibvirtErrorCode.InternalError,
        EngineErrorReason.BackupOfInactiveDomain => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.CheckpointOfInactiveDomain => LibvirtErrorCode.OperationUnsupported,
        EngineErrorReason.JobWaitTimeout => LibvirtErrorCode.OperationTimeout,
        EngineErrorReason.NoBackupJob => LibvirtErrorCode.NoDomainBackup,
        EngineErrorReason.NoActiveJob => LibvirtErrorCode.OperationInvalid,
        EngineErrorReason.NoIncrementalCheckpoint => LibvirtErrorCode.NoDomainCheckpoint,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };

    /// <summary>
    /// True when libvirt's message for <paramref name="reason"/> is the detail alone, without
    /// its code's prefix: the argument checks (<c>virCheckFlags</c>, <c>VIR_EXCLUSIVE_FLAGS_RET</c>,
    /// <c>VIR_REQUIRE_FLAG_RET</c>, <c>virCheckNonZeroArgGoto</c>) report through
    /// <c>virReportInvalidArg</c> and its kin, which call <c>virRaiseErrorFull</c> with the
    /// format itself rather than through <c>virErrorMsg</c> (src/util/virerror.h). libvirtd 9.0
    /// says "unsupported flags (0x2) in function qemuCheckpointCreateXML", code INVALID_ARG.
    /// </summary>
    public static bool IsBare(EngineErrorReason reason) =>
        reason is EngineErrorReason.UnsupportedFlags or EngineErrorReason.ConflictingFlags or EngineErrorReason.NoFileDescriptors;
}
