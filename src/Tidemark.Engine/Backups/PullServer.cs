using System.Net;
using System.Net.Sockets;
using Tidemark.Formats.Backups;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;

namespace Tidemark.Engine.Backups;

/// <summary>
/// The NBD server of a pull backup, as the document's <c>&lt;server&gt;</c> says (spec §3.1,
/// §6.7 steps 5, 6 and 13): a unix socket or a TCP address, optionally TLS-required with
/// x509 credentials from the backup TLS directory.
/// </summary>
internal static class PullServer
{
    /// <summary>Creates the server and binds it; it serves <paramref name="exports"/> from then on.</summary>
    /// <exception cref="BackupJobException">An unsupported transport, TLS without a directory, unreadable credentials, or an address that cannot be bound.</exception>
    public static async ValueTask<NbdServer> StartAsync(BackupServer server, IEnumerable<NbdExport> exports, BackupJobOptions options, CancellationToken cancellationToken)
    {
        EndPoint? endPoint = server.Transport switch
        {
            ServerTransport.Unix => UnixEndPoint(server.Socket ?? throw new ArgumentException("missing socket for unix transport", nameof(server))),
            ServerTransport.Tcp => await TcpEndPointAsync(server, cancellationToken).ConfigureAwait(false),
            ServerTransport.Fd when options.ServerSocket is not null => null,
            ServerTransport.Rdma => throw new BackupJobException(BackupErrorReason.Unsupported, "transport rdma is not supported for <server>"),
            _ => throw new BackupJobException(BackupErrorReason.Unsupported, $"transport '{BackupNames.Of(server.Transport)}' is not supported for <server>"),
        };
        if (endPoint is null)
        {
            Listen(options.ServerSocket!, server);
        }

        NbdTlsCredentials? tls = null;
        if (server.Tls == true)
        {
            if (options.TlsDirectory is null)
            {
                throw new BackupJobException(BackupErrorReason.TlsNotConfigured, "backup TLS directory not configured");
            }

            try
            {
                tls = NbdTlsCredentials.LoadServer(options.TlsDirectory, options.TlsVerifyPeer);
            }
            catch (NbdException e)
            {
                throw new BackupJobException(BackupErrorReason.ServerFailed, $"cannot load backup TLS credentials: {e.Message}", e);
            }
        }

        var serverOptions = new NbdServerOptions { Tls = tls, Persistent = true };
        if (endPoint is null)
        {
            serverOptions.Listeners.Add(options.ServerSocket!);
        }
        else
        {
            serverOptions.EndPoints.Add(endPoint);
        }

        var nbd = new NbdServer(serverOptions, exports, options.LoggerFactory);
        try
        {
            await nbd.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            await nbd.DisposeAsync().ConfigureAwait(false);
            tls?.Dispose();
            throw server.Transport == ServerTransport.Tcp && e is SocketException socketError
                ? TcpBindFailed(socketError)
                : new BackupJobException(BackupErrorReason.ServerFailed, $"cannot start the backup NBD server on {Describe(server)}: {e.Message}", e);
        }

        return nbd;
    }

    /// <summary>A socket path too long for one, refused in the words libvirt passes on from QEMU's <c>nbd-server-start</c>.</summary>
    private static UnixDomainSocketEndPoint UnixEndPoint(string path)
    {
        try
        {
            return UnixSocketPath.EndPoint(path);
        }
        catch (IOException e)
        {
            throw new BackupJobException(BackupErrorReason.ServerAddressRefused, $"unable to execute QEMU command 'nbd-server-start': {e.Message}", e);
        }
    }

    /// <summary>
    /// A TCP address that cannot be listened on, in the words libvirt passes on from QEMU's
    /// <c>nbd-server-start</c> (qemuBackupBegin; QEMU's inet_listen_saddr): a port taken by
    /// another process is "Failed to find an available port" (QEMU tries each port of the
    /// range, here one), any other bind error "Failed to bind socket", each with strerror.
    /// </summary>
    private static BackupJobException TcpBindFailed(SocketException e)
    {
        var what = e.SocketErrorCode == SocketError.AddressAlreadyInUse ? "Failed to find an available port" : "Failed to bind socket";
        return new BackupJobException(BackupErrorReason.ServerAddressRefused, $"unable to execute QEMU command 'nbd-server-start': {what}: {e.Message}", e);
    }

    private static async ValueTask<EndPoint> TcpEndPointAsync(BackupServer server, CancellationToken cancellationToken)
    {
        var name = server.Name ?? "localhost";
        if (!IPAddress.TryParse(name, out var address))
        {
            try
            {
                var addresses = await Dns.GetHostAddressesAsync(name, cancellationToken).ConfigureAwait(false);
                address = addresses.FirstOrDefault() ?? throw new SocketException((int)SocketError.HostNotFound);
            }
            catch (SocketException e)
            {
                throw new BackupJobException(BackupErrorReason.ServerFailed, $"cannot resolve backup NBD server name '{name}': {e.Message}", e);
            }
        }

        return new IPEndPoint(address, server.Port);
    }

    /// <summary>
    /// Listens on a handed-over socket, as QEMU's <c>nbd-server-start</c> does with an fd address:
    /// the caller may have only bound it (libvirt's documented use), and listening again on a
    /// listening socket only sets its backlog.
    /// </summary>
    private static void Listen(Socket socket, BackupServer server)
    {
        try
        {
            if (socket.SocketType != SocketType.Stream)
            {
                throw new SocketException((int)SocketError.SocketNotSupported);
            }

            socket.Listen(128);
        }
        catch (SocketException e)
        {
            throw new BackupJobException(BackupErrorReason.ServerFailed, $"cannot start the backup NBD server on {Describe(server)}: {e.Message}", e);
        }
    }

    private static string Describe(BackupServer server) => server.Transport switch
    {
        ServerTransport.Unix => $"unix socket '{server.Socket}'",
        ServerTransport.Fd => $"file descriptor group '{server.FdGroup}'",
        _ => $"'{server.Name}:{server.Port}'",
    };
}
