using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Storage;

namespace Tidemark.Nbd.Server;

/// <summary>
/// An NBD server: listens on TCP and unix sockets, serves its exports to any number of clients
/// (up to <see cref="NbdServerLimits.MaxConnections"/> at once, the others waiting their turn).
/// The accept loop only accepts, registers and hands off; a connection's failure is handled
/// inside that connection.
/// </summary>
/// <remarks>
/// Connection slots, as qemu-nbd's <c>-e</c>: a connection takes a slot before it is greeted and
/// gives it back when it ends. A connection accepted while every slot is taken waits, not yet
/// greeted, in a FIFO of at most <see cref="NbdServerLimits.MaxQueuedConnections"/> (past that it
/// is closed at once). A client cannot keep a slot without negotiating: the handshake must end
/// within <see cref="NbdServerLimits.HandshakeTimeout"/>, so silent or half-open clients only
/// delay the ones queued behind them, never lock them out.
/// </remarks>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>
    /// 4 MiB socket buffers: a connection with 64 pipelined 256 KiB reads keeps far more than the
    /// default ~200 KiB in flight. The kernel caps the value at net.core.[rw]mem_max.
    /// </summary>
    private const int SocketBufferSize = 4 * 1024 * 1024;

    // Each export with the number of its addition: NBD_OPT_LIST names them in that order, as
    // QEMU's server does (nbd_negotiate_handle_list walks its export list, appended to by
    // nbd_export_create), so a pull backup lists its disks in the backup document's order.
    private readonly ConcurrentDictionary<string, (NbdExport Export, long Order)> _exports = new(StringComparer.Ordinal);
    private long _exportsAdded;
    private readonly ConcurrentDictionary<ServerConnection, Task> _connections = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly List<EndPoint> _boundEndPoints = [];

    // The unix socket paths this server bound (not those of handed-over listeners), removed when it stops.
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _logger;

    // One count per connection slot (MaxConnections, read when the server is created). Its
    // async waiters are released in FIFO order, which makes the waiting connections a queue.
    private readonly SemaphoreSlim _slots;

    // Connections accepted and not yet holding a slot.
    private int _waiting;
    private int _started;

    public NbdServer(NbdServerOptions options, IEnumerable<NbdExport> exports, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(exports);
        Options = options;
        _slots = new SemaphoreSlim(options.Limits.MaxConnections, options.Limits.MaxConnections);
        _logger = (ILogger?)loggerFactory?.CreateLogger<NbdServer>() ?? NullLogger.Instance;
        foreach (var export in exports)
        {
            AddExport(export);
        }
    }

    public NbdServerOptions Options { get; }

    /// <summary>The exports, in the order they were added.</summary>
    public IEnumerable<NbdExport> Exports => _exports.Values.OrderBy(e => e.Order).Select(e => e.Export);

    /// <summary>Where the server listens, with the ports the system chose for port 0.</summary>
    public IReadOnlyList<EndPoint> EndPoints => _boundEndPoints;

    /// <summary>Completes when the server has stopped (see <see cref="NbdServerOptions.Persistent"/>).</summary>
    public Task Completion => _completion.Task;

    /// <summary>Adds an export; clients that connect afterwards see it.</summary>
    /// <exception cref="ArgumentException">An export of that name exists.</exception>
    public void AddExport(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        if (!_exports.TryAdd(export.Name, (export, Interlocked.Increment(ref _exportsAdded))))
        {
            throw new ArgumentException($"export '{export.Name}' specified twice", nameof(export));
        }
    }

    /// <summary>Removes an export from new negotiations; connections already using it go on.</summary>
    public bool RemoveExport(string name) => _exports.TryRemove(name, out _);

    /// <summary>
    /// Removes an export and ends every connection using it, returning once they have ended
    /// (their requests in flight answered): afterwards nothing reaches the export's image, which
    /// its owner may close. False when there is no such export.
    /// </summary>
    public async Task<bool> RemoveExportAsync(string name)
    {
        if (!_exports.TryRemove(name, out var removed))
        {
            return false;
        }

        var users = _connections.Where(c => ReferenceEquals(c.Key.Export, removed.Export)).ToList();
        foreach (var (connection, _) in users)
        {
            connection.End();
        }

        await Task.WhenAll(users.Select(c => c.Value)).ConfigureAwait(false);
        return true;
    }

    internal NbdExport? FindExport(string name) => _exports.TryGetValue(name, out var entry) ? entry.Export : null;

    /// <summary>Binds every endpoint and starts accepting on them and on the handed-over listeners.</summary>
    /// <exception cref="SocketException">An endpoint cannot be bound (in use, no permission).</exception>
    /// <exception cref="IOException">A unix socket's path holds something other than a stale socket (<see cref="UnixSocketPath"/>).</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("the server is already started");
        }

        // Adopted first: should binding an endpoint fail, disposing the server closes them too.
        foreach (var listener in Options.Listeners)
        {
            _listeners.Add(listener);
            var endPoint = listener.LocalEndPoint;
            if (endPoint is not null)
            {
                _boundEndPoints.Add(endPoint);
            }

            _logger.LogInformation("NBD server listening on {EndPoint}, a socket handed over", endPoint is null ? "?" : Describe(endPoint));
        }

        foreach (var endPoint in Options.EndPoints)
        {
            var socket = endPoint is UnixDomainSocketEndPoint
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (endPoint is UnixDomainSocketEndPoint unix)
                {
                    // Disposing the listener removes its file.
                    UnixSocketPath.Claim(unix.ToString());
                    socket.Bind(endPoint);
                }
                else
                {
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    socket.Bind(endPoint);
                }

                socket.Listen(128);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            _listeners.Add(socket);

            _boundEndPoints.Add(socket.LocalEndPoint ?? endPoint);
            _logger.LogInformation("NBD server listening on {EndPoint}", Describe(socket.LocalEndPoint ?? endPoint));
        }

        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(Options.Listeners.Contains(listener)
                ? Task.Factory.StartNew(() => AcceptHandedOver(listener), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
                : AcceptLoopAsync(listener));
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Serves one connection that the caller accepted (a socket pair, an in-memory stream) and
    /// returns when it ends. The server owns and disposes <paramref name="stream"/>.
    /// </summary>
    public async Task ServeAsync(Stream stream, string peer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _shutdown.Token);
        var connection = new ServerConnection(this, stream, peer, _logger);
        await using (connection.ConfigureAwait(false))
        {
            await connection.RunAsync(linked.Token).ConfigureAwait(false);
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        try
        {
            while (!_shutdown.IsCancellationRequested)
            {
                Admit(await listener.AcceptAsync(_shutdown.Token).ConfigureAwait(false));
            }
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException) when (_shutdown.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _logger.LogCritical(e, "the accept loop failed; no new connections are accepted");
        }
    }

    /// <summary>The accept loop of a handed-over listener (<see cref="HandedOverListener"/>), on its own thread.</summary>
    private void AcceptHandedOver(Socket listener)
    {
        try
        {
            while (!_shutdown.IsCancellationRequested)
            {
                if (HandedOverListener.TryAccept(listener) is { } socket)
                {
                    Admit(socket);
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException && _shutdown.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _logger.LogCritical(e, "the accept loop failed; no new connections are accepted");
        }
    }

    /// <summary>Queues an accepted connection for a slot, or closes it when the queue is full.</summary>
    private void Admit(Socket socket)
    {
        if (Interlocked.Increment(ref _waiting) > Options.Limits.MaxQueuedConnections + _slots.CurrentCount)
        {
            Interlocked.Decrement(ref _waiting);
            _logger.LogWarning(
                "refusing a connection: all {Limit} connection slots are taken and the queue of {Queued} is full",
                Options.Limits.MaxConnections,
                Options.Limits.MaxQueuedConnections);
            socket.Dispose();
            return;
        }

        _ = RunConnectionAsync(socket);
    }

    private async Task RunConnectionAsync(Socket socket)
    {
        var peer = socket.RemoteEndPoint is { } remote && remote is not UnixDomainSocketEndPoint ? remote.ToString() ?? "client" : "unix client";
        if (!await TakeSlotAsync(socket, peer).ConfigureAwait(false))
        {
            socket.Dispose();
            return;
        }

        ServerConnection? connection = null;
        try
        {
            if (socket.AddressFamily == AddressFamily.Unix)
            {
                socket.SendBufferSize = SocketBufferSize;
                socket.ReceiveBufferSize = SocketBufferSize;
            }
            else
            {
                // TCP keeps the kernel's buffer autotuning (setting SO_SNDBUF turns it off).
                socket.NoDelay = true;
            }
            connection = new ServerConnection(this, new BlockingSocketStream(socket), peer, _logger);
            var run = RunOnOwnThreadAsync(connection);
            _logger.LogDebug("{Peer}: connected", peer);
            await run.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "{Peer}: connection failed unexpectedly", peer);
        }
        finally
        {
            if (connection is not null)
            {
                _connections.TryRemove(connection, out _);
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }

            _slots.Release();
            _logger.LogDebug("{Peer}: disconnected", peer);
            if (!Options.Persistent)
            {
                _ = StopAsync();
            }
        }
    }

    /// <summary>
    /// Runs a connection on a thread of its own: its socket blocks (<see cref="BlockingSocketStream"/>),
    /// so each request is read, carried out and answered on this thread while nothing else waits;
    /// only requests that wait for something (a lock, a pool read) go on elsewhere.
    /// </summary>
    private Task RunOnOwnThreadAsync(ServerConnection connection)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var token = _shutdown.Token;

        // Listed before it runs, so an export's removal finds every connection that could be using it.
        _connections[connection] = done.Task;
        var thread = new Thread(() =>
        {
            try
            {
                connection.RunAsync(token).GetAwaiter().GetResult();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        {
            IsBackground = true,
            Name = "NBD connection",
        };
        thread.UnsafeStart();
        return done.Task;
    }

    /// <summary>
    /// Waits for a connection slot in FIFO order. False when the server stops meanwhile, or the
    /// client left while it waited (its slot goes straight to the next one).
    /// </summary>
    private async Task<bool> TakeSlotAsync(Socket socket, string peer)
    {
        try
        {
            if (!_slots.Wait(0))
            {
                _logger.LogInformation("{Peer}: waiting for a connection slot: {Limit} connections are open", peer, Options.Limits.MaxConnections);
                await _slots.WaitAsync(_shutdown.Token).ConfigureAwait(false);
                if (HasLeft(socket))
                {
                    _slots.Release();
                    _logger.LogDebug("{Peer}: left while waiting for a connection slot", peer);
                    return false;
                }
            }

            return true;
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
            return false;
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    // A client that closed its end (or reset) while waiting: the socket reads as ready with
    // nothing to read. A client sends nothing before its greeting, so data waiting means a
    // client that is still there.
    private static bool HasLeft(Socket socket)
    {
        try
        {
            return socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    /// <summary>Stops listening, ends every connection and waits for them.</summary>
    public async Task StopAsync()
    {
        if (!_shutdown.IsCancellationRequested)
        {
            await _shutdown.CancelAsync().ConfigureAwait(false);
        }

        // A handed-over listener is closed only once its loop has let go of it: closing a socket
        // still in use makes .NET shut it down, which would end the owner's socket too.
        foreach (var listener in _listeners.Except(Options.Listeners))
        {
            listener.Dispose();
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        foreach (var listener in Options.Listeners)
        {
            listener.Dispose();
        }

        await Task.WhenAll(_connections.Values).ConfigureAwait(false);
        _completion.TrySetResult();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _shutdown.Dispose();

        // _slots is not disposed: a connection task may still give its slot back after the
        // server stopped, and a SemaphoreSlim whose wait handle was never asked for holds nothing.
    }

    private static string Describe(EndPoint endPoint) => endPoint is UnixDomainSocketEndPoint unix ? $"unix:{unix}" : endPoint.ToString() ?? "?";
}
