namespace Tidemark.Formats;

/// <summary>
/// The libvirt error codes (<c>VIR_ERR_*</c>) that the document layer reports. A client sees
/// each one as a fixed prefix before the detail text (spec §9), e.g.
/// <c>unsupported configuration: no disk named 'vdz'</c>.
/// </summary>
public enum LibvirtErrorCode
{
    /// <summary><c>VIR_ERR_INTERNAL_ERROR</c>.</summary>
    InternalError,

    /// <summary><c>VIR_ERR_INVALID_ARG</c>.</summary>
    InvalidArg,

    /// <summary><c>VIR_ERR_XML_ERROR</c>.</summary>
    XmlError,

    /// <summary><c>VIR_ERR_CONFIG_UNSUPPORTED</c>.</summary>
    ConfigUnsupported,

    /// <summary><c>VIR_ERR_XML_INVALID_SCHEMA</c>.</summary>
    XmlInvalidSchema,

    /// <summary><c>VIR_ERR_OPERATION_UNSUPPORTED</c>.</summary>
    OperationUnsupported,

    /// <summary><c>VIR_ERR_OPERATION_INVALID</c>.</summary>
    OperationInvalid,

    /// <summary><c>VIR_ERR_OPERATION_FAILED</c>.</summary>
    OperationFailed,
}

/// <summary>The client-visible prefix of each <see cref="LibvirtErrorCode"/> (spec §9), in one table.</summary>
public static class LibvirtErrorPrefix
{
    /// <summary>The text libvirt puts before ": detail" for <paramref name="code"/>.</summary>
    public static string Of(LibvirtErrorCode code) => code switch
    {
        LibvirtErrorCode.InternalError => "internal error",
        LibvirtErrorCode.InvalidArg => "invalid argument",
        LibvirtErrorCode.XmlError => "XML error",
        LibvirtErrorCode.ConfigUnsupported => "unsupported configuration",
        LibvirtErrorCode.XmlInvalidSchema => "XML document failed to validate against schema",
        LibvirtErrorCode.OperationUnsupported => "Operation not supported",
        LibvirtErrorCode.OperationInvalid => "Requested operation is not valid",
        LibvirtErrorCode.OperationFailed => "operation failed",
        _ => throw new ArgumentOutOfRangeException(nameof(code), code, null),
    };
}
