namespace Tidemark.Formats;

/// <summary>
/// The libvirt error codes (<c>VIR_ERR_*</c>) that Tidemark reports, numbered as libvirt numbers
/// them on the wire (<c>remote_error.code</c>, libvirt-rpc.md §6). A client sees each one as a
/// fixed prefix before the detail text (spec §9), e.g.
/// <c>unsupported configuration: no disk named 'vdz'</c>.
/// </summary>
public enum LibvirtErrorCode
{
    /// <summary><c>VIR_ERR_INTERNAL_ERROR</c>.</summary>
    InternalError = 1,

    /// <summary><c>VIR_ERR_INVALID_ARG</c>.</summary>
    InvalidArg = 8,

    /// <summary><c>VIR_ERR_OPERATION_FAILED</c>.</summary>
    OperationFailed = 9,

    /// <summary><c>VIR_ERR_XML_ERROR</c>.</summary>
    XmlError = 27,

    /// <summary><c>VIR_ERR_NO_DOMAIN</c>.</summary>
    NoDomain = 42,

    /// <summary><c>VIR_ERR_OPERATION_INVALID</c>.</summary>
    OperationInvalid = 55,

    /// <summary><c>VIR_ERR_CONFIG_UNSUPPORTED</c>.</summary>
    ConfigUnsupported = 67,

    /// <summary><c>VIR_ERR_OPERATION_TIMEOUT</c>: a domain's job lock not acquired in time.</summary>
    OperationTimeout = 68,

    /// <summary><c>VIR_ERR_OPERATION_UNSUPPORTED</c>.</summary>
    OperationUnsupported = 84,

    /// <summary><c>VIR_ERR_XML_INVALID_SCHEMA</c>.</summary>
    XmlInvalidSchema = 92,

    /// <summary><c>VIR_ERR_NO_DOMAIN_CHECKPOINT</c>.</summary>
    NoDomainCheckpoint = 103,

    /// <summary><c>VIR_ERR_SYSTEM_ERROR</c>: a failed system call, "what: strerror" with no prefix.</summary>
    SystemError = 38,

    /// <summary><c>VIR_ERR_NO_DOMAIN_BACKUP</c>.</summary>
    NoDomainBackup = 104,

    /// <summary><c>VIR_ERR_CHECKPOINT_INCONSISTENT</c>.</summary>
    CheckpointInconsistent = 109,

    /// <summary><c>VIR_ERR_DEVICE_MISSING</c>: a device to detach or change that the domain does not have.</summary>
    DeviceMissing = 99,
}

/// <summary>The client-visible prefix of each <see cref="LibvirtErrorCode"/> (spec §9), in one table.</summary>
public static class LibvirtErrorPrefix
{
    /// <summary>The message libvirt makes of <paramref name="detail"/> for <paramref name="code"/>: "prefix: detail", the detail alone for a system error.</summary>
    public static string Format(LibvirtErrorCode code, string detail)
        => code == LibvirtErrorCode.SystemError ? detail : $"{Of(code)}: {detail}";

    /// <summary>The text libvirt puts before ": detail" for <paramref name="code"/>.</summary>
    public static string Of(LibvirtErrorCode code) => code switch
    {
        LibvirtErrorCode.InternalError => "internal error",
        LibvirtErrorCode.InvalidArg => "invalid argument",
        LibvirtErrorCode.OperationFailed => "operation failed",
        LibvirtErrorCode.XmlError => "XML error",
        LibvirtErrorCode.NoDomain => "Domain not found",
        LibvirtErrorCode.OperationInvalid => "Requested operation is not valid",
        LibvirtErrorCode.ConfigUnsupported => "unsupported configuration",
        LibvirtErrorCode.OperationTimeout => "Timed out during operation",
        LibvirtErrorCode.OperationUnsupported => "Operation not supported",
        LibvirtErrorCode.XmlInvalidSchema => "XML document failed to validate against schema",
        LibvirtErrorCode.NoDomainCheckpoint => "Domain checkpoint not found",
        LibvirtErrorCode.NoDomainBackup => "Domain backup job id not found",
        LibvirtErrorCode.CheckpointInconsistent => "checkpoint inconsistent",
        LibvirtErrorCode.DeviceMissing => "device not found",
        _ => throw new ArgumentOutOfRangeException(nameof(code), code, null),
    };
}
