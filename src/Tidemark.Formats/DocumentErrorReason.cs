namespace Tidemark.Formats;

/// <summary>
/// Why a document was refused. Each reason has one libvirt error code (<see cref="DocumentErrorReasons.CodeOf"/>);
/// the detail text names the element, attribute or value at fault.
/// </summary>
public enum DocumentErrorReason
{
    // Reading the XML itself.

    /// <summary>Not well-formed XML (the detail names line and column).</summary>
    MalformedXml,

    /// <summary>A DTD or entity declaration: refused, never expanded.</summary>
    DtdProhibited,

    /// <summary>
    /// The document is larger than <see cref="Xml.DocumentText.MaxBytes"/> bytes or
    /// <see cref="Xml.XmlDocumentLoader.MaxDocumentChars"/> characters.
    /// </summary>
    DocumentTooLarge,

    /// <summary>The document's bytes are not UTF-8.</summary>
    NotUtf8,

    /// <summary>An element has more than <see cref="Xml.XmlDocumentLoader.MaxAttributesPerElement"/> attributes.</summary>
    TooManyAttributes,

    /// <summary>The root element is not the one expected (or not one Tidemark knows).</summary>
    UnexpectedRoot,

    /// <summary>What libvirt's RELAX NG schema refuses: unknown elements or attributes, patterns, enum values.</summary>
    SchemaViolation,

    // Checkpoints (spec §2.2, §2.3, §2.6).

    /// <summary>"a redefined checkpoint must have a name".</summary>
    RedefineWithoutName,

    /// <summary>"missing creationTime from existing checkpoint".</summary>
    RedefineWithoutCreationTime,

    /// <summary>"missing domain in checkpoint".</summary>
    MissingDomain,

    /// <summary>"too many disk checkpoint requests for domain".</summary>
    TooManyDisks,

    /// <summary>"domain must have at least one disk to perform checkpoints" (or backup).</summary>
    DomainWithoutDisks,

    /// <summary>"no disk named '%s'".</summary>
    NoSuchDisk,

    /// <summary>"disk '%s' specified twice".</summary>
    DiskSpecifiedTwice,

    /// <summary>"disk '%s' is empty or readonly".</summary>
    DiskEmptyOrReadOnly,

    /// <summary>"cannot set moment %s as its own parent".</summary>
    OwnParent,

    /// <summary>"definition for checkpoint %s must use uuid %s".</summary>
    WrongDomainUuid,

    // Backups (spec §3.2, §3.3).

    /// <summary>"unknown backup mode '%s'".</summary>
    UnknownBackupMode,

    /// <summary>"use of &lt;server&gt; requires pull mode backup".</summary>
    ServerRequiresPull,

    /// <summary>"transport rdma is not supported for &lt;server&gt;".</summary>
    RdmaTransport,

    /// <summary>"backup socket path '%s' must be absolute".</summary>
    RelativeSocketPath,

    /// <summary>Host errors of <c>&lt;server&gt;</c>: missing socket or name, socket on a non-unix transport, unknown transport.</summary>
    InvalidServer,

    /// <summary>"failed to parse port number '%s'" / "port '%s' out of range".</summary>
    InvalidPort,

    /// <summary>"missing name from disk backup element".</summary>
    BackupDiskWithoutName,

    /// <summary>A missing or invalid attribute value that libvirt's own parser refuses ("Invalid value for attribute …").</summary>
    InvalidAttribute,

    /// <summary>"unknown storage source type '%s'" / "unsupported disk backup type '%s'".</summary>
    UnsupportedStoreType,

    /// <summary>"unknown storage source format '%s'".</summary>
    UnknownStoreFormat,

    /// <summary>"'incremental' backup mode of disk '%s' requires setting 'incremental' field for disk or backup".</summary>
    IncrementalWithoutCheckpoint,

    /// <summary>"disk '%s' has no media".</summary>
    DiskWithoutMedia,

    /// <summary>"refusing to generate file name for disk '%s'".</summary>
    CannotGenerateStorePath,

    // The qemu driver's defaults (spec §3.4, §6.7).

    /// <summary>"&lt;domainbackup&gt; must specify TCP port for now".</summary>
    TcpPortRequired,

    /// <summary>"pull mode backup for disk '%s' requires qcow2 driver".</summary>
    PullRequiresQcow2,
}

/// <summary>The libvirt error code of each <see cref="DocumentErrorReason"/>, in one table.</summary>
public static class DocumentErrorReasons
{
    /// <summary>The libvirt error code under which libvirt reports <paramref name="reason"/>.</summary>
    public static LibvirtErrorCode CodeOf(DocumentErrorReason reason) => reason switch
    {
        DocumentErrorReason.MalformedXml => LibvirtErrorCode.XmlError,
        DocumentErrorReason.DtdProhibited => LibvirtErrorCode.XmlError,
        DocumentErrorReason.DocumentTooLarge => LibvirtErrorCode.XmlError,
        DocumentErrorReason.NotUtf8 => LibvirtErrorCode.XmlError,
        DocumentErrorReason.TooManyAttributes => LibvirtErrorCode.XmlError,
        DocumentErrorReason.UnexpectedRoot => LibvirtErrorCode.XmlError,
        DocumentErrorReason.SchemaViolation => LibvirtErrorCode.XmlInvalidSchema,
        DocumentErrorReason.RedefineWithoutName => LibvirtErrorCode.XmlError,
        DocumentErrorReason.RedefineWithoutCreationTime => LibvirtErrorCode.InternalError,
        DocumentErrorReason.MissingDomain => LibvirtErrorCode.InternalError,
        DocumentErrorReason.TooManyDisks => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.DomainWithoutDisks => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.NoSuchDisk => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.DiskSpecifiedTwice => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.DiskEmptyOrReadOnly => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.OwnParent => LibvirtErrorCode.InvalidArg,
        DocumentErrorReason.WrongDomainUuid => LibvirtErrorCode.InvalidArg,
        DocumentErrorReason.UnknownBackupMode => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.ServerRequiresPull => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.RdmaTransport => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.RelativeSocketPath => LibvirtErrorCode.XmlError,
        DocumentErrorReason.InvalidServer => LibvirtErrorCode.XmlError,
        DocumentErrorReason.InvalidPort => LibvirtErrorCode.InternalError,
        DocumentErrorReason.BackupDiskWithoutName => LibvirtErrorCode.XmlError,
        DocumentErrorReason.InvalidAttribute => LibvirtErrorCode.XmlError,
        DocumentErrorReason.UnsupportedStoreType => LibvirtErrorCode.XmlError,
        DocumentErrorReason.UnknownStoreFormat => LibvirtErrorCode.XmlError,
        DocumentErrorReason.IncrementalWithoutCheckpoint => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.DiskWithoutMedia => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.CannotGenerateStorePath => LibvirtErrorCode.ConfigUnsupported,
        DocumentErrorReason.TcpPortRequired => LibvirtErrorCode.OperationUnsupported,
        DocumentErrorReason.PullRequiresQcow2 => LibvirtErrorCode.ConfigUnsupported,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };
}
