namespace Tidemark.Nbd;

/// <summary>Why an NBD operation failed; one value per kind of failure the caller can act on.</summary>
public enum NbdErrorReason
{
    /// <summary>The peer sent bytes that break the protocol (bad magic, impossible length): the connection is lost.</summary>
    ProtocolViolation,

    /// <summary>The peer closed the connection, or it broke, before a complete message arrived.</summary>
    ConnectionClosed,

    /// <summary>The server answered an option with an error reply (the message names it).</summary>
    OptionRefused,

    /// <summary>The export named by the client does not exist on the server.</summary>
    UnknownExport,

    /// <summary>The server requires TLS and the client has none, or the TLS handshake failed.</summary>
    TlsRequired,

    /// <summary>The server lacks something the client needs (structured replies, a meta context, a command).</summary>
    Unsupported,

    /// <summary>A transmission request failed on the server; <see cref="NbdException.Errno"/> says how.</summary>
    RequestFailed,

    /// <summary>The call is not allowed in the client's current state.</summary>
    InvalidState,

    /// <summary>An argument is outside what the export or the protocol allows.</summary>
    InvalidArgument,

    /// <summary>An NBD URI could not be parsed.</summary>
    InvalidUri,

    /// <summary>TLS credentials are missing or unreadable.</summary>
    BadCredentials,
}

/// <summary>The one exception family of the NBD layer.</summary>
public sealed class NbdException : Exception
{
    public NbdException(NbdErrorReason reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public NbdException(NbdErrorReason reason, Protocol.NbdErrno errno, string message)
        : base(message)
    {
        Reason = reason;
        Errno = errno;
    }

    public NbdException()
        : this(NbdErrorReason.ProtocolViolation, "NBD protocol error")
    {
    }

    public NbdException(string message)
        : this(NbdErrorReason.ProtocolViolation, message)
    {
    }

    public NbdException(string message, Exception innerException)
        : this(NbdErrorReason.ProtocolViolation, message, innerException)
    {
    }

    /// <summary>What kind of failure this is.</summary>
    public NbdErrorReason Reason { get; }

    /// <summary>For <see cref="NbdErrorReason.RequestFailed"/>: the error the server replied with.</summary>
    public Protocol.NbdErrno Errno { get; }
}
