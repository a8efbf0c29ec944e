namespace Tidemark.Daemon;

/// <summary>Why the daemon could not start.</summary>
public enum DaemonErrorReason
{
    /// <summary>Another daemon holds the state directory's lock.</summary>
    StateDirectoryInUse,

    /// <summary>The state directory or its lock file cannot be opened.</summary>
    StateDirectoryUnusable,

    /// <summary>The socket path cannot be bound.</summary>
    SocketUnavailable,
}

/// <summary>The daemon cannot start: its state directory is taken or its socket cannot be bound.</summary>
public sealed class DaemonException : Exception
{
    public DaemonException(DaemonErrorReason reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    /// <summary>Why the daemon could not start.</summary>
    public DaemonErrorReason Reason { get; }
}
