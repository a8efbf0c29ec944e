using Tidemark.Formats;

namespace Tidemark.Remote;

/// <summary>
/// libvirt's error codes (<c>virErrorNumber</c>) with their wire values: the ones clients
/// branch on (libvirt-rpc.md §6) and the ones Tidemark's document layer reports.
/// </summary>
public enum VirErrorNumber
{
    Ok = 0,
    InternalError = 1,
    NoMemory = 2,

    /// <summary>A procedure or feature the driver lacks; virsh falls back where it can.</summary>
    NoSupport = 3,

    /// <summary>No driver accepted the name a client opened ("no connection driver available for NAME").</summary>
    NoConnect = 5,
    InvalidArg = 8,
    OperationFailed = 9,

    XmlError = 27,
    OperationDenied = 29,
    /// <summary>An OS call failed (connecting a socket …).</summary>
    SystemError = 38,
    RpcError = 39,
    NoDomain = 42,
    NoStoragePool = 49,
    OperationInvalid = 55,
    ConfigUnsupported = 67,

    /// <summary>A domain's job lock not acquired within libvirt's wait (virDomainObjBeginJobInternal).</summary>
    OperationTimeout = 68,

    /// <summary>libvirt's answer for a guest-agent call on a domain without an agent channel (qemuDomainAgentAvailable).</summary>
    ArgumentUnsupported = 74,
    OperationUnsupported = 84,

    /// <summary>A guest agent declared in the domain but not connected (qemuDomainAgentAvailable).</summary>
    AgentUnresponsive = 86,
    XmlInvalidSchema = 92,
    DeviceMissing = 99,

    /// <summary>Load-bearing: virsh's checkpoint-list --tree stops at the root on it; virtnbdbackup redefines on it.</summary>
    NoDomainCheckpoint = 103,
    NoDomainBackup = 104,
    NoHostname = 108,
    CheckpointInconsistent = 109,
}

/// <summary>Where an error came from (<c>virErrorDomain</c>), with wire values (§6).</summary>
public enum VirErrorDomain
{
    None = 0,
    Rpc = 7,
    Qemu = 10,
    Remote = 13,
    Storage = 18,
    Domain = 20,
    DomainCheckpoint = 69,
}

/// <summary>The text libvirt puts before ": detail" for each code (virErrorMsg), in one table.</summary>
public static class VirErrorText
{
    /// <summary>The prefix of <paramref name="code"/>'s messages, or null for codes without one here.</summary>
    public static string? PrefixOf(VirErrorNumber code) => code switch
    {
        VirErrorNumber.InternalError => "internal error",
        VirErrorNumber.NoMemory => "out of memory",
        VirErrorNumber.NoSupport => "this function is not supported by the connection driver",
        VirErrorNumber.InvalidArg => "invalid argument",
        VirErrorNumber.OperationFailed => "operation failed",
        VirErrorNumber.XmlError => "XML error",
        VirErrorNumber.OperationDenied => "operation forbidden",
        // virErrorMsg: an RPC error with a detail is the detail alone.
        VirErrorNumber.RpcError => null,
        VirErrorNumber.NoDomain => "Domain not found",
        VirErrorNumber.NoStoragePool => "Storage pool not found",
        VirErrorNumber.SystemError => null,
        VirErrorNumber.OperationInvalid => "Requested operation is not valid",
        VirErrorNumber.ConfigUnsupported => "unsupported configuration",
        VirErrorNumber.OperationTimeout => "Timed out during operation",
        VirErrorNumber.ArgumentUnsupported => "argument unsupported",
        VirErrorNumber.OperationUnsupported => "Operation not supported",
        VirErrorNumber.AgentUnresponsive => "Guest agent is not responding",
        VirErrorNumber.XmlInvalidSchema => "XML document failed to validate against schema",
        VirErrorNumber.DeviceMissing => "device not found",
        VirErrorNumber.NoDomainCheckpoint => "Domain checkpoint not found",
        VirErrorNumber.NoDomainBackup => "Domain backup job id not found",
        VirErrorNumber.NoHostname => "no hostname found",
        VirErrorNumber.CheckpointInconsistent => "checkpoint inconsistent",
        _ => null,
    };

    /// <summary>The wire code of the document layer's <see cref="LibvirtErrorCode"/>.</summary>
    public static VirErrorNumber From(LibvirtErrorCode code) => code switch
    {
        LibvirtErrorCode.InternalError => VirErrorNumber.InternalError,
        LibvirtErrorCode.InvalidArg => VirErrorNumber.InvalidArg,
        LibvirtErrorCode.XmlError => VirErrorNumber.XmlError,
        LibvirtErrorCode.ConfigUnsupported => VirErrorNumber.ConfigUnsupported,
        LibvirtErrorCode.XmlInvalidSchema => VirErrorNumber.XmlInvalidSchema,
        LibvirtErrorCode.OperationUnsupported => VirErrorNumber.OperationUnsupported,
        _ => VirErrorNumber.InternalError,
    };
}
