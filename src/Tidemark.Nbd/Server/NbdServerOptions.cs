using System.Net;
using System.Net.Sockets;

namespace Tidemark.Nbd.Server;

/// <summary>How an <see cref="NbdServer"/> listens and what it allows.</summary>
public sealed class NbdServerOptions
{
    /// <summary>
    /// Where to listen: <see cref="IPEndPoint"/> (TCP; port 0 picks a free port) or
    /// <see cref="System.Net.Sockets.UnixDomainSocketEndPoint"/>. Empty: the server only serves
    /// connections handed to <see cref="NbdServer.ServeAsync"/>.
    /// </summary>
    public IList<EndPoint> EndPoints { get; } = [];

    /// <summary>
    /// Sockets already bound and listening that the server accepts on too, handed over by whoever
    /// made them (libvirt's fd transport: the client's own listening socket, passed as a file
    /// descriptor). The server owns them from <see cref="NbdServer.StartAsync"/> on and closes
    /// them when it stops; a unix socket's path is the creator's and is left in place.
    /// </summary>
    public IList<Socket> Listeners { get; } = [];

    /// <summary>
    /// X.509 credentials. When set the server is in TLS-required mode (as qemu-nbd with
    /// <c>--tls-creds</c>): before STARTTLS it answers nothing but STARTTLS and ABORT.
    /// </summary>
    public NbdTlsCredentials? Tls { get; init; }

    /// <summary>The bounds applied to clients.</summary>
    public NbdServerLimits Limits { get; init; } = new();

    /// <summary>
    /// Keep serving after a client leaves (qemu-nbd's <c>-t</c>). When false the server stops
    /// once its first connection has ended, as qemu-nbd does without <c>-t</c>.
    /// </summary>
    public bool Persistent { get; init; } = true;
}
