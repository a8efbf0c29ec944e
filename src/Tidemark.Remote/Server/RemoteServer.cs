using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Storage;

namespace Tidemark.Remote.Server;

/// <summary>
/// libvirt's remote protocol (programs REMOTE and KEEPALIVE) on a unix socket, serving an
/// <see cref="IRemoteHypervisor"/>. The accept loop only accepts, checks the peer, registers
/// and hands off; everything else happens in the connection, whose failure stays its own.
/// </summary>
public sealed class RemoteServer : IAsyncDisposable
{
    private readonly ConcurrentDictionary<RemoteConnection, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger _logger;
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    public RemoteServer(RemoteServerOptions options, IRemoteHypervisor hypervisor, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(hypervisor);
        Options = options;
        Hypervisor = hypervisor;
        _logger = (ILogger?)loggerFactory?.CreateLogger<RemoteServer>() ?? NullLogger.Instance;
        Events = new DomainEventPublisher(() => _connections.Keys);
    }

    public RemoteServerOptions Options { get; }

    public IRemoteHypervisor Hypervisor { get; }

    /// <summary>Where the backend announces domain events to the clients that registered for them.</summary>
    public DomainEventPublisher Events { get; }

    /// <summary>Connections being served now.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Binds the socket (mode <see cref="RemoteServerOptions.SocketMode"/>) and starts accepting.</summary>
    /// <exception cref="SocketException">The path cannot be bound.</exception>
    /// <exception cref="IOException">The path holds something other than a stale socket (<see cref="UnixSocketPath"/>).</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (_listener is not null)
        {
            throw new InvalidOperationException("the server is already started");
        }

        var path = Options.SocketPath;
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // A socket left by a killed daemon is replaced, anything else refused (the lock on
            // the state directory keeps two daemons apart, not the socket file); disposing the
            // listener removes the file. The mode is set between bind and listen: before
            // listen() nobody can connect, so there is no moment when the socket is reachable
            // with the umask's wider mode.
            UnixSocketPath.Claim(path);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, Options.SocketMode);
            }

            listener.Listen(128);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        _listener = listener;
        _logger.LogInformation("libvirt remote protocol listening on unix:{Path}", path);
        _acceptLoop = AcceptLoopAsync(listener);
        return Task.CompletedTask;
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var ownUid = Tidemark.Storage.ProcessIdentity.UserId;
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                var socket = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
                PeerCredentials peer;
                try
                {
                    peer = PeerCredentials.Of(socket);
                }
                catch (SocketException e)
                {
                    _logger.LogWarning("refusing a connection: no peer credentials ({Message})", e.Message);
                    socket.Dispose();
                    continue;
                }

                if (!Options.AllowOtherUsers && peer.UserId != ownUid && peer.UserId != 0)
                {
                    _logger.LogWarning("refusing a connection from {Peer}: only uid {Uid} and root may connect", peer, ownUid);
                    socket.Dispose();
                    continue;
                }

                if (_connections.Count >= Options.Limits.MaxConnections)
                {
                    _logger.LogWarning("refusing a connection from {Peer}: {Limit} connections are open", peer, Options.Limits.MaxConnections);
                    socket.Dispose();
                    continue;
                }

                // Registered before it runs, and its task filled in only while it is still
                // registered: a connection that ends before the accept loop gets here (a client
                // that sends garbage and goes, on a loaded machine) must not be added back after
                // its own removal, where it would count against MaxConnections for good.
                var connection = new RemoteConnection(this, socket, peer.ToString(), _logger);
                _connections[connection] = Task.CompletedTask;
                _connections.TryUpdate(connection, RunConnectionAsync(connection), Task.CompletedTask);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _logger.LogCritical(e, "the accept loop failed; no new connections are accepted");
        }
    }

    private async Task RunConnectionAsync(RemoteConnection connection)
    {
        // Yield first: the accept loop goes back to accepting at once rather than running the
        // connection's first steps.
        await Task.Yield();
        _logger.LogDebug("{Peer}: connected", connection.Peer);
        try
        {
            await connection.RunAsync(_stopping.Token).ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            await connection.DisposeAsync().ConfigureAwait(false);
            _logger.LogDebug("{Peer}: disconnected", connection.Peer);
        }
    }

    /// <summary>Stops accepting, ends every connection (their calls are cancelled) and removes the socket.</summary>
    public async Task StopAsync()
    {
        if (!_stopping.IsCancellationRequested)
        {
            await _stopping.CancelAsync().ConfigureAwait(false);
        }

        _listener?.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        await Task.WhenAll(_connections.Values).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
