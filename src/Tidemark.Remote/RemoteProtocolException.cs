namespace Tidemark.Remote;

/// <summary>Why bytes on a libvirt remote-protocol connection could not be understood; one value per malformation.</summary>
public enum RemoteProtocolErrorReason
{
    /// <summary>The data ended before the XDR item being read (a truncated message or payload).</summary>
    Truncated,

    /// <summary>A string, opaque or array is longer than the maximum its definition states.</summary>
    LengthOverMaximum,

    /// <summary>An optional-data discriminant or a bool is neither 0 nor 1.</summary>
    InvalidDiscriminant,

    /// <summary>A union discriminant names no arm (a typed parameter of unknown type).</summary>
    UnknownUnionArm,

    /// <summary>A string is not valid UTF-8.</summary>
    InvalidString,

    /// <summary>Bytes are left over after the last field of a payload.</summary>
    TrailingBytes,

    /// <summary>A message's length word is over the maximum message length (RemoteServerLimits.MaxMessageLength).</summary>
    MessageTooLarge,

    /// <summary>A message's length word is smaller than its header.</summary>
    MessageTooShort,

    /// <summary>A message from the server of a program other than REMOTE and KEEPALIVE, or of a version other than 1.</summary>
    UnknownProgram,

    /// <summary>The message type or status is not one this side accepts in that direction.</summary>
    UnexpectedMessage,

    /// <summary>The peer closed the connection, or it broke, before a complete message arrived.</summary>
    ConnectionClosed,

    /// <summary>A call with more file descriptors than a message may carry.</summary>
    TooManyFds,

    /// <summary>File descriptors that do not match their call: missing, lost in transit, or sent with no call to take them.</summary>
    UnmatchedFds,

    /// <summary>A URI could not be parsed or names a transport this library does not speak.</summary>
    InvalidUri,
}

/// <summary>
/// The one exception family of the remote-protocol layer for malformed input and lost
/// connections. Errors the other side reports on purpose are <see cref="LibvirtError"/>.
/// </summary>
public sealed class RemoteProtocolException : Exception
{
    public RemoteProtocolException(RemoteProtocolErrorReason reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public RemoteProtocolException()
        : this(RemoteProtocolErrorReason.Truncated, "malformed remote protocol message")
    {
    }

    public RemoteProtocolException(string message)
        : this(RemoteProtocolErrorReason.Truncated, message)
    {
    }

    public RemoteProtocolException(string message, Exception innerException)
        : this(RemoteProtocolErrorReason.Truncated, message, innerException)
    {
    }

    /// <summary>What is wrong.</summary>
    public RemoteProtocolErrorReason Reason { get; }
}
