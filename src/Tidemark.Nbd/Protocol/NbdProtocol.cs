namespace Tidemark.Nbd.Protocol;

// The NBD wire protocol: every magic, code, flag and layout that Tidemark sends or accepts, in one
// place (formats.md §4; NetworkBlockDevice/nbd doc/proto.md). All integers are big-endian.

/// <summary>Magic numbers, with their ASCII meaning where they have one (formats.md §4.2, §4.4, §4.5).</summary>
public static class NbdMagic
{
    /// <summary>"NBDMAGIC": first 8 bytes the server sends.</summary>
    public const ulong Init = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle greeting, and the prefix of every option request.</summary>
    public const ulong Option = 0x49484156454F5054;

    /// <summary>Prefix of every fixed-newstyle option reply.</summary>
    public const ulong OptionReply = 0x0003e889045565a9;

    /// <summary>Compact (28-byte) transmission request.</summary>
    public const uint Request = 0x25609513;

    /// <summary>Extended (32-byte) request; only with EXTENDED_HEADERS, which Tidemark does not negotiate.</summary>
    public const uint ExtendedRequest = 0x21e41c71;

    /// <summary>Simple (16-byte) reply.</summary>
    public const uint SimpleReply = 0x67446698;

    /// <summary>Structured reply chunk (20-byte header).</summary>
    public const uint StructuredReply = 0x668e33ef;
}

/// <summary>Handshake flags the server sends after IHAVEOPT (u16).</summary>
[Flags]
public enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags, the u32 the client answers the greeting with.</summary>
[Flags]
public enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Option codes of the handshake phase (formats.md §4.2).</summary>
public enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

/// <summary>Option reply types; errors have bit 31 set.</summary>
public enum NbdOptionReplyType : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = 0x80000001,
    ErrPolicy = 0x80000002,
    ErrInvalid = 0x80000003,
    ErrPlatform = 0x80000004,
    ErrTlsRequired = 0x80000005,
    ErrUnknown = 0x80000006,
    ErrShutdown = 0x80000007,
    ErrBlockSizeRequired = 0x80000008,
    ErrTooBig = 0x80000009,
    ErrExtendedHeaderRequired = 0x8000000a,
}

/// <summary>Information types of NBD_OPT_INFO and NBD_OPT_GO.</summary>
public enum NbdInfoType : ushort
{
    /// <summary>u16 type, u64 size, u16 transmission flags (12 bytes): mandatory before ACK.</summary>
    Export = 0,

    /// <summary>u16 type, canonical name.</summary>
    Name = 1,

    /// <summary>u16 type, free text.</summary>
    Description = 2,

    /// <summary>u16 type, u32 minimum, u32 preferred, u32 maximum payload (14 bytes).</summary>
    BlockSize = 3,
}

/// <summary>Transmission flags (u16) sent with the export size (formats.md §4.3).</summary>
[Flags]
public enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
    BlockStatusPayload = 1 << 12,
}

/// <summary>Transmission command types (formats.md §4.4).</summary>
public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
    Resize = 8,
}

/// <summary>Command flags (u16).</summary>
[Flags]
public enum NbdCommandFlags : ushort
{
    None = 0,

    /// <summary>Reply only once the data is durable (WRITE, WRITE_ZEROES, TRIM).</summary>
    Fua = 1 << 0,

    /// <summary>WRITE_ZEROES must not punch a hole.</summary>
    NoHole = 1 << 1,

    /// <summary>READ: at most one content chunk.</summary>
    DontFragment = 1 << 2,

    /// <summary>BLOCK_STATUS: one extent per context.</summary>
    ReqOne = 1 << 3,

    /// <summary>WRITE_ZEROES: fail with ENOTSUP unless zeroing is fast.</summary>
    FastZero = 1 << 4,

    /// <summary>Extended headers only.</summary>
    PayloadLength = 1 << 5,
}

/// <summary>Structured reply chunk types (formats.md §4.5).</summary>
public enum NbdReplyChunkType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    BlockStatusExtended = 6,
    Error = 0x8001,
    ErrorOffset = 0x8002,
}

/// <summary>Structured reply chunk flags.</summary>
[Flags]
public enum NbdReplyFlags : ushort
{
    None = 0,

    /// <summary>The last chunk of the reply.</summary>
    Done = 1 << 0,
}

/// <summary>The error values of NBD replies (formats.md §4.6); unknown values mean EINVAL.</summary>
public enum NbdErrno : uint
{
    None = 0,
    EPERM = 1,
    EIO = 5,
    ENOMEM = 12,
    EINVAL = 22,
    ENOSPC = 28,
    EOVERFLOW = 75,
    ENOTSUP = 95,
    ESHUTDOWN = 108,
}

/// <summary>Fixed sizes of the wire structures, in bytes.</summary>
public static class NbdWire
{
    /// <summary>Default TCP port (IANA "nbd").</summary>
    public const int DefaultPort = 10809;

    /// <summary>u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags.</summary>
    public const int GreetingLength = 18;

    /// <summary>u64 IHAVEOPT, u32 option, u32 length.</summary>
    public const int OptionHeaderLength = 16;

    /// <summary>u64 reply magic, u32 option, u32 reply type, u32 length.</summary>
    public const int OptionReplyHeaderLength = 20;

    /// <summary>Zero padding after the EXPORT_NAME answer unless NO_ZEROES was agreed.</summary>
    public const int ExportNamePaddingLength = 124;

    /// <summary>u32 magic, u16 flags, u16 type, u64 cookie, u64 offset, u32 length.</summary>
    public const int RequestLength = 28;

    /// <summary>u32 magic, u32 error, u64 cookie.</summary>
    public const int SimpleReplyLength = 16;

    /// <summary>u32 magic, u16 flags, u16 type, u64 cookie, u32 length.</summary>
    public const int ChunkHeaderLength = 20;

    /// <summary>OFFSET_DATA payload starts with the u64 offset.</summary>
    public const int OffsetDataPrefixLength = 8;

    /// <summary>OFFSET_HOLE payload: u64 offset, u32 hole size.</summary>
    public const int OffsetHoleLength = 12;

    /// <summary>BLOCK_STATUS payload: u32 context id, then descriptors.</summary>
    public const int BlockStatusPrefixLength = 4;

    /// <summary>One block status descriptor: u32 length, u32 flags.</summary>
    public const int BlockDescriptorLength = 8;

    /// <summary>ERROR payload before the message: u32 error, u16 message length.</summary>
    public const int ErrorPrefixLength = 6;

    /// <summary>Strings (export names, descriptions, context names) are at most 4096 bytes (proto.md).</summary>
    public const int MaxStringLength = 4096;
}

/// <summary><c>base:allocation</c> extent flags (formats.md §4.10).</summary>
[Flags]
public enum NbdAllocationFlags : uint
{
    Data = 0,
    Hole = 1,
    Zero = 2,
}
