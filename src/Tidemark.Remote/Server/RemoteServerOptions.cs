namespace Tidemark.Remote.Server;

/// <summary>Where and how a <see cref="RemoteServer"/> listens.</summary>
public sealed class RemoteServerOptions
{
    /// <summary>The unix socket path (a stale socket file there is replaced).</summary>
    public required string SocketPath { get; init; }

    /// <summary>
    /// The socket file's mode. Default 0600: only the owner may connect (libvirtd's
    /// unix_sock_rw_perms for a per-user daemon); 0660 lets a group in, with a group-owned path.
    /// </summary>
    public UnixFileMode SocketMode { get; init; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// Whether peers of another uid than the server's are accepted (besides root, always
    /// accepted). Default false: the socket mode is the first gate, the peer's credentials the second.
    /// </summary>
    public bool AllowOtherUsers { get; init; }

    public RemoteServerLimits Limits { get; init; } = new();
}
