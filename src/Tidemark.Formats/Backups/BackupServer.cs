namespace Tidemark.Formats.Backups;

/// <summary>The NBD server of a pull backup (<c>&lt;server&gt;</c>, spec §3.1).</summary>
/// <param name="Transport">How clients connect.</param>
/// <param name="Name">TCP: host name or address to listen on.</param>
/// <param name="Port">TCP: port; 0 when not given (libvirt then refuses to start, spec §3.4).</param>
/// <param name="Socket">Unix: the absolute socket path.</param>
/// <param name="FdGroup">Fd: the name of a registered file-descriptor group.</param>
/// <param name="Tls">tls='yes'/'no', or null when not given.</param>
public sealed record BackupServer(
    ServerTransport Transport,
    string? Name = null,
    ushort Port = 0,
    string? Socket = null,
    string? FdGroup = null,
    bool? Tls = null);

/// <summary>The transport of a <see cref="BackupServer"/>.</summary>
public enum ServerTransport
{
    Tcp,
    Unix,

    /// <summary>Parsed only to be refused: "transport rdma is not supported for &lt;server&gt;".</summary>
    Rdma,

    Fd,
}
