namespace Tidemark.Remote.Protocol;

/// <summary>
/// Wire constants of libvirt's RPC layer (libvirt-rpc.md §1, virnetprotocol.x) and the maxima
/// that remote_protocol.x states for the items Tidemark speaks. Numbering upstream is
/// append-only, so these never change meaning.
/// </summary>
public static class RemoteWire
{
    /// <summary>Program REMOTE (remote_protocol.x): every procedure of §5.</summary>
    public const uint RemoteProgram = 0x20008086;

    /// <summary>Program KEEPALIVE: ASCII "keep" (virkeepaliveprotocol.x).</summary>
    public const uint KeepaliveProgram = 0x6b656570;

    /// <summary>
    /// Program QEMU (qemu_protocol.x): virsh's qemu-agent-command, qemu-monitor-command and
    /// qemu-monitor-event. Served with libvirtd's answers for a domain with no monitor to pass
    /// commands to (see <c>QemuProgramCalls</c>).
    /// </summary>
    public const uint QemuProgram = 0x20008087;

    /// <summary>The only version of REMOTE, KEEPALIVE and QEMU.</summary>
    public const uint ProgramVersion = 1;

    /// <summary>Header: length, prog, vers, proc, type, serial, status — seven 4-byte words.</summary>
    public const int HeaderLength = 28;

    /// <summary>The length word alone (VIR_NET_MESSAGE_LEN_MAX).</summary>
    public const int LengthWordSize = 4;

    /// <summary>VIR_NET_MESSAGE_MAX: 32 MiB since libvirt 1.x (16 MiB before); the largest whole message.</summary>
    public const int MaxMessageLength = 32 * 1024 * 1024;

    /// <summary>REMOTE_STRING_MAX: 4 MiB (a domain XML with many devices stays far below it).</summary>
    public const int MaxStringLength = 4 * 1024 * 1024;

    /// <summary>REMOTE_DOMAIN_LIST_MAX.</summary>
    public const int MaxDomains = 16384;

    /// <summary>REMOTE_DOMAIN_CHECKPOINT_LIST_MAX.</summary>
    public const int MaxCheckpoints = 16384;

    /// <summary>REMOTE_AUTH_TYPE_LIST_MAX.</summary>
    public const int MaxAuthTypes = 20;

    /// <summary>REMOTE_DOMAIN_JOB_STATS_MAX: typed params of GET_JOB_STATS and the JOB_COMPLETED event.</summary>
    public const int MaxJobStats = 64;

    /// <summary>REMOTE_DOMAIN_GUEST_INFO_PARAMS_MAX.</summary>
    public const int MaxGuestInfoParams = 2048;

    /// <summary>REMOTE_DOMAIN_FSFREEZE_MOUNTPOINTS_MAX.</summary>
    public const int MaxFsFreezeMountpoints = 256;

    /// <summary>REMOTE_DOMAIN_FSINFO_MAX: file systems in one DOMAIN_GET_FSINFO answer.</summary>
    public const int MaxGuestFileSystems = 256;

    /// <summary>REMOTE_DOMAIN_FSINFO_DISKS_MAX: disk aliases of one file system.</summary>
    public const int MaxGuestFileSystemDisks = 256;

    /// <summary>REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX.</summary>
    public const int MaxBlockStatsParams = 16;

    /// <summary>REMOTE_DOMAIN_DISK_ERRORS_MAX.</summary>
    public const int MaxDiskErrors = 256;

    /// <summary>REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX: typed params of one domain's stats record.</summary>
    public const int MaxDomainStatsParams = 262144;

    /// <summary>REMOTE_DOMAIN_LIST_MAX: domains named in, and records returned by, CONNECT_GET_ALL_DOMAIN_STATS.</summary>
    public const int MaxDomainList = 16384;

    /// <summary>VIR_UUID_BUFLEN.</summary>
    public const int UuidLength = 16;

    /// <summary>
    /// VIR_NET_MESSAGE_NUM_FDS_MAX: file descriptors one CALL_WITH_FDS may carry. Their count is
    /// a u32 right after the header, before the arguments; the descriptors follow the message,
    /// one per data byte (SCM_RIGHTS on the unix socket).
    /// </summary>
    public const int MaxFdsPerMessage = 32;
}

/// <summary>The message <c>type</c> word (virNetMessageType).</summary>
public enum RemoteMessageType : uint
{
    Call = 0,
    Reply = 1,

    /// <summary>Server→client event, or a keepalive PING/PONG in either direction; serial 0.</summary>
    Message = 2,
    Stream = 3,
    CallWithFds = 4,
    ReplyWithFds = 5,
    StreamHole = 6,
}

/// <summary>The message <c>status</c> word (virNetMessageStatus).</summary>
public enum RemoteMessageStatus : uint
{
    Ok = 0,

    /// <summary>The payload is a <c>remote_error</c>.</summary>
    Error = 1,

    /// <summary>Streams only.</summary>
    Continue = 2,
}

/// <summary>Procedures of the KEEPALIVE program, sent as MESSAGE with empty payloads.</summary>
public enum KeepaliveProcedure : uint
{
    Ping = 1,
    Pong = 2,
}

/// <summary>Features a client asks about with CONNECT_SUPPORTS_FEATURE (§4, VIR_DRV_FEATURE_*).</summary>
public enum RemoteFeature
{
    /// <summary>File descriptors may be passed with calls (CALL_WITH_FDS); virDomainFDAssociate asks first.</summary>
    FdPassing = 8,

    /// <summary>String typed parameters may appear in replies.</summary>
    TypedParamString = 9,

    /// <summary>The server answers KEEPALIVE PING; clients then ping it when idle.</summary>
    ProgramKeepalive = 10,

    /// <summary>CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY (316/317) and the EVENT_CALLBACK_* messages.</summary>
    RemoteEventCallback = 14,

    /// <summary>CONNECT_REGISTER_CLOSE_CALLBACK (360/361).</summary>
    RemoteCloseCallback = 15,
}

/// <summary>remote_auth_type.</summary>
public enum RemoteAuthType
{
    None = 0,
    Sasl = 1,
    Polkit = 2,
}
