using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Server;

/// <summary>
/// One client of a <see cref="RemoteServer"/>. Four steps per message — read (framing, via a
/// PipeReader), validate (header), dispatch (a task per call, at most
/// <see cref="RemoteServerLimits.MaxConcurrentCallsPerConnection"/> at once; the reader waits
/// for a free slot, so a client that floods calls is slowed by its own socket), reply (through
/// one bounded queue and one writer, so replies go out whole, in completion order, matched by
/// serial). How the connection ended is classified in one place, <see cref="RunAsync"/>.
/// </summary>
internal sealed class RemoteConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly PipeReader _reader;
    private readonly UnixSocketReceiver? _receiver;
    private readonly RemoteServer _server;
    private readonly ILogger _logger;
    private readonly Channel<ReadOnlyMemory<byte>> _outgoing;
    private readonly SemaphoreSlim _callSlots;
    private readonly CancellationTokenSource _closing = new();
    private readonly ConcurrentDictionary<Task, bool> _calls = new();
    private readonly ConcurrentDictionary<int, (DomainEventId EventId, Guid? Domain)> _callbacks = new();
    private readonly ServerKeepalive _keepalive;
    private Task _keepaliveLoop = Task.CompletedTask;
    private int _nextCallbackId;
    private volatile bool _opened;

    internal RemoteConnection(RemoteServer server, Socket socket, string peer, ILogger logger)
    {
        _server = server;
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        if (socket.AddressFamily == AddressFamily.Unix)
        {
            // Only a unix socket carries file descriptors (CALL_WITH_FDS).
            _receiver = new UnixSocketReceiver(socket);
            _reader = PipeReader.Create(_receiver, new StreamPipeReaderOptions(bufferSize: ReadBufferSize, leaveOpen: true));
        }
        else
        {
            _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: ReadBufferSize, leaveOpen: true));
        }

        _logger = logger;
        Peer = peer;
        _callSlots = new SemaphoreSlim(Limits.MaxConcurrentCallsPerConnection);
        _keepalive = new ServerKeepalive(Limits.KeepaliveInterval, Limits.KeepaliveCount);
        _outgoing = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(Limits.MaxPendingRepliesPerConnection)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>64 KiB: libvirt's initial message buffer (VIR_NET_MESSAGE_INITIAL); bigger messages grow the pipe.</summary>
    private const int ReadBufferSize = 64 * 1024;

    /// <summary>"uid N pid P" from SO_PEERCRED, for logs.</summary>
    public string Peer { get; }

    /// <summary>CONNECT_OPEN succeeded.</summary>
    public bool IsOpened => _opened;

    /// <summary>The URI name the client opened.</summary>
    public string? OpenedName { get; private set; }

    private RemoteServerLimits Limits => _server.Options.Limits;

    /// <summary>Opened with VIR_CONNECT_RO: calls that change anything are refused (<see cref="ReadOnlyAccess"/>).</summary>
    public bool IsReadOnly { get; private set; }

    internal void MarkOpened(string? name, bool readOnly)
    {
        OpenedName = name;
        IsReadOnly = readOnly;
        _opened = true;
    }

    internal int AddEventCallback(DomainEventId eventId, RemoteDomain? domain)
    {
        // virDomainEventID values end below 64 in every libvirt release; IDs Tidemark never
        // raises are accepted and stay silent, as virsh event --all registers all of them.
        if ((int)eventId is < 0 or >= 64)
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, $"unsupported event ID {(int)eventId}");
        }

        if (_callbacks.Count >= Limits.MaxEventCallbacksPerConnection)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationFailed, VirErrorDomain.Rpc, $"too many event callbacks on this connection (the maximum is {Limits.MaxEventCallbacksPerConnection})");
        }

        var id = Interlocked.Increment(ref _nextCallbackId);
        _callbacks[id] = (eventId, domain?.Uuid);
        return id;
    }

    internal void RemoveEventCallback(int callbackId)
    {
        if (!_callbacks.TryRemove(callbackId, out _))
        {
            // libvirtd's words and code (daemon/remote.c), as libvirt 9.0 answers an unknown id.
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, $"domain event callback {callbackId} not registered");
        }
    }

    internal void ClearEventCallbacks() => _callbacks.Clear();

    internal bool HasCallbacks(DomainEventId eventId) => _callbacks.Values.Any(c => c.EventId == eventId);

    internal IEnumerable<int> CallbacksFor(DomainEventId eventId, RemoteDomain domain)
    {
        foreach (var (id, callback) in _callbacks)
        {
            if (callback.EventId == eventId && (callback.Domain is null || callback.Domain == domain.Uuid))
            {
                yield return id;
            }
        }
    }

    /// <summary>
    /// The client asked whether the server speaks keepalive (libvirt's client asks only when
    /// it has an event loop to answer PINGs with): from now on a silent client is pinged, and
    /// dropped when it stays silent (<see cref="ServerKeepalive"/>), as libvirtd does.
    /// </summary>
    internal void StartKeepalive()
    {
        if (_keepalive.TryStart())
        {
            Volatile.Write(ref _keepaliveLoop, Task.Run(() => KeepaliveAsync(_closing.Token), CancellationToken.None));
        }
    }

    private async Task KeepaliveAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _keepalive.RunAsync(
                () => SendEvent(new MessageBuilder(RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Ping, RemoteMessageType.Message, 0, RemoteMessageStatus.Ok).Finish()),
                silentSeconds =>
                {
                    _logger.LogInformation("{Peer}: dropping connection: no response to {Count} keepalive messages in {Seconds:0} seconds", Peer, Limits.KeepaliveCount, silentSeconds);
                    Abort();
                },
                cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The connection ended first.
        }
    }

    /// <summary>Queues an event; a client too far behind to take it is disconnected rather than waited for.</summary>
    internal void SendEvent(ReadOnlyMemory<byte> message)
    {
        if (!_outgoing.Writer.TryWrite(message) && !_closing.IsCancellationRequested)
        {
            _logger.LogInformation("{Peer}: dropping connection: {Limit} replies and events are queued and the client does not read them", Peer, Limits.MaxPendingRepliesPerConnection);
            Abort();
        }
    }

    /// <summary>Serves the connection to its end. Never throws.</summary>
    internal async Task RunAsync(CancellationToken serverStopping)
    {
        using var stopping = serverStopping.Register(Abort);
        var writer = WriteLoopAsync();
        try
        {
            await ReadLoopAsync(_closing.Token).ConfigureAwait(false);
            _logger.LogDebug("{Peer}: client closed the connection", Peer);
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            _logger.LogDebug("{Peer}: connection closed by the server", Peer);
        }
        catch (RemoteProtocolException e) when (e.Reason == RemoteProtocolErrorReason.ConnectionClosed)
        {
            _logger.LogDebug("{Peer}: {Message}", Peer, e.Message);
        }
        catch (RemoteProtocolException e)
        {
            // Bad input: logged at information level, then this connection only is dropped.
            _logger.LogInformation("{Peer}: dropping connection: {Message}", Peer, e.Message);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // A peer reset stays quiet.
            _logger.LogDebug("{Peer}: connection lost: {Message}", Peer, e.Message);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "{Peer}: connection failed unexpectedly", Peer);
        }
        finally
        {
            // Calls still running belong to a client that is gone: cancel them and release
            // what they hold before the connection is forgotten.
            Abort();
            _callbacks.Clear();
            await Task.WhenAll(_calls.Keys).ConfigureAwait(false);

            // Only a call starts keepalive, and every call has ended.
            await Volatile.Read(ref _keepaliveLoop).ConfigureAwait(false);
            _outgoing.Writer.TryComplete();
            await writer.ConfigureAwait(false);

            // What the connection held goes with it (libvirt: its close callbacks, e.g. fd groups).
            try
            {
                _server.Hypervisor.ConnectionClosed(this);
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "{Peer}: releasing what the connection held failed", Peer);
            }
        }
    }

    private async Task ReadLoopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            try
            {
                while (MessageFramer.TryRead(ref buffer, Limits.MaxMessageLength, out var message))
                {
                    await HandleAsync(message!, cancellationToken).ConfigureAwait(false);
                }
            }
            finally
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
            }

            if (result.IsCompleted)
            {
                if (!buffer.IsEmpty)
                {
                    throw new RemoteProtocolException(RemoteProtocolErrorReason.Truncated, $"client closed the connection in the middle of a message ({buffer.Length} bytes of it received)");
                }

                return;
            }
        }
    }

    private async Task HandleAsync(RemoteMessage message, CancellationToken cancellationToken)
    {
        _keepalive.MessageReceived();
        var header = message.Header;
        if (header.Program == RemoteWire.KeepaliveProgram)
        {
            HandleKeepalive(header);
            return;
        }

        if (header.Type is not (RemoteMessageType.Call or RemoteMessageType.CallWithFds) || header.Status != RemoteMessageStatus.Ok)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.UnexpectedMessage, $"unexpected message type {(uint)header.Type} status {(uint)header.Status} for procedure {header.Procedure}; only calls are accepted");
        }

        var fds = message.FdCount == 0 ? []
            : _receiver?.TakeFds(message.FdCount) ?? throw new RemoteProtocolException(RemoteProtocolErrorReason.UnmatchedFds, "file descriptors can only be passed on a unix socket");
        if (header.Program is not (RemoteWire.RemoteProgram or RemoteWire.QemuProgram) || header.Version != RemoteWire.ProgramVersion)
        {
            // libvirtd answers a call to a program it does not serve and reads on
            // (virNetServerProgramUnknownError); the frame's length kept the stream in step.
            Close(fds);
            _logger.LogInformation("{Peer}: call to program {Program:x8} version {Version}, which is not served", Peer, header.Program, header.Version);
            var error = LibvirtError.Create(VirErrorNumber.RpcError, VirErrorDomain.Rpc, $"Cannot find program {(int)header.Program} version {(int)header.Version}");
            SendEvent(CallContext.ErrorReply(header, error).Finish());
            return;
        }

        try
        {
            if (!_callSlots.Wait(0, CancellationToken.None))
            {
                _keepalive.ReadingPaused();
                await _callSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
                _keepalive.ReadingResumed();
            }
        }
        catch
        {
            Close(fds);
            throw;
        }

        var call = Task.Run(() => CallAsync(message, fds, cancellationToken), CancellationToken.None);
        _calls[call] = true;
        _ = call.ContinueWith(t => _calls.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>PING is answered with PONG; a PONG needs nothing more (any message restarts <see cref="ServerKeepalive"/>'s count).</summary>
    private void HandleKeepalive(MessageHeader header)
    {
        if (header.Type != RemoteMessageType.Message)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.UnexpectedMessage, $"keepalive message of type {(uint)header.Type}");
        }

        if (header.Procedure == (uint)KeepaliveProcedure.Ping)
        {
            var pong = new MessageBuilder(RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Pong, RemoteMessageType.Message, 0, RemoteMessageStatus.Ok);
            SendEvent(pong.Finish());
        }
    }

    private async Task CallAsync(RemoteMessage message, SafeFileHandle[] fds, CancellationToken cancellationToken)
    {
        var context = new CallContext(this, message, _server.Hypervisor, cancellationToken) { Fds = fds };
        try
        {
            MessageBuilder reply;
            try
            {
                reply = await RemoteDispatcher.DispatchAsync(context).ConfigureAwait(false);
            }
            catch (LibvirtError e)
            {
                reply = CallContext.ErrorReply(message.Header, e);
            }
            catch (RemoteProtocolException e)
            {
                // The frame was whole but its XDR was not: say why and serve the next call, as
                // libvirtd does (virNetServerProgramDispatchCall replies with the error and keeps
                // the client); the frame's length kept the stream in step.
                _logger.LogInformation("{Peer}: {Api}: {Message}", Peer, context.ApiName, e.Message);
                reply = CallContext.ErrorReply(message.Header, LibvirtError.Create(VirErrorNumber.RpcError, VirErrorDomain.Rpc, $"Unable to decode message payload: {e.Message}"));
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "{Peer}: {Api} failed unexpectedly", Peer, context.ApiName);
                reply = CallContext.ErrorReply(message.Header, LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, e.Message));
            }

            ReadOnlyMemory<byte> bytes;
            try
            {
                bytes = reply.Finish(Limits.MaxMessageLength);
            }
            catch (RemoteProtocolException e)
            {
                bytes = CallContext.ErrorReply(message.Header, LibvirtError.Create(VirErrorNumber.RpcError, VirErrorDomain.Rpc, e.Message)).Finish();
            }

            await _outgoing.Writer.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            // The connection is closing; the reply has nobody to go to.
        }
        finally
        {
            if (!context.FdsTaken)
            {
                Close(fds);
            }

            _callSlots.Release();
        }
    }

    private static void Close(SafeFileHandle[] fds)
    {
        foreach (var fd in fds)
        {
            fd.Dispose();
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var message in _outgoing.Reader.ReadAllAsync(_closing.Token).ConfigureAwait(false))
            {
                await _stream.WriteAsync(message, _closing.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            _logger.LogDebug("{Peer}: stopped sending: {Message}", Peer, e.Message);
        }
        finally
        {
            // Whether the queue was completed after a refused payload or sending failed, the
            // reading side must end too.
            Abort();
        }
    }

    /// <summary>Ends the connection: pending reads and writes fail, calls are cancelled.</summary>
    internal void Abort()
    {
        try
        {
            _closing.Cancel();
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _reader.CompleteAsync().ConfigureAwait(false);
        if (_receiver is not null)
        {
            await _receiver.DisposeAsync().ConfigureAwait(false);
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        _closing.Dispose();
        _callSlots.Dispose();
    }
}
