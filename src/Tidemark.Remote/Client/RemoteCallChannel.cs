using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Client;

/// <summary>
/// The client side of one connection: sends calls with increasing serials (from 0, as virsh
/// does), matches replies by serial so calls may be pipelined, answers keepalive PINGs,
/// pings an idle server that supports keepalive, and hands MESSAGE events to
/// <see cref="LibvirtClient"/>. Any loss of framing breaks the channel for good: every pending
/// and later call fails with <see cref="RemoteProtocolErrorReason.ConnectionClosed"/>.
/// </summary>
internal sealed class RemoteCallChannel : IAsyncDisposable
{
    /// <summary>libvirt's client defaults: a PING after 5 s of silence, give up after 6 unanswered.</summary>
    private static readonly TimeSpan KeepaliveInterval = TimeSpan.FromSeconds(5);
    private const int KeepaliveCount = 6;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly PipeReader _reader;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<RemoteMessage>> _pending = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly Action<RemoteMessage> _onEvent;
    private readonly Task _receiveLoop;
    private Task _keepaliveLoop = Task.CompletedTask;
    private Exception? _broken;
    private long _lastReceived = Environment.TickCount64;
    private int _nextSerial = -1;
    private int _disposed;

    private RemoteCallChannel(Socket socket, Action<RemoteMessage> onEvent)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: true));
        _onEvent = onEvent;
        _receiveLoop = Task.Run(ReceiveLoopAsync);
    }

    public static async Task<RemoteCallChannel> ConnectAsync(string socketPath, Action<RemoteMessage> onEvent, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw LibvirtError.Create(VirErrorNumber.SystemError, VirErrorDomain.Rpc, $"Failed to connect socket to '{socketPath}': {Strerror(e, socketPath)}");
        }

        return new RemoteCallChannel(socket, onEvent);
    }

    // connect(2)'s errno as strerror words it, which is what libvirt prints; .NET reports a
    // missing socket file as "address not available".
    private static string Strerror(SocketException e, string socketPath) => e.SocketErrorCode switch
    {
        _ when !File.Exists(socketPath) => "No such file or directory",
        SocketError.ConnectionRefused => "Connection refused",
        SocketError.AccessDenied => "Permission denied",
        _ => e.Message,
    };

    /// <summary>Starts pinging the server when it is idle (after it answered feature 10 with 1).</summary>
    public void StartKeepalive() => _keepaliveLoop = Task.Run(KeepaliveLoopAsync);

    /// <summary>Calls <paramref name="procedure"/> and decodes its reply with <paramref name="decode"/>.</summary>
    /// <exception cref="LibvirtError">The server answered with an error.</exception>
    /// <exception cref="RemoteProtocolException">The connection is lost or the reply is malformed.</exception>
    public async Task<T> CallAsync<T>(RemoteProcedure procedure, Action<XdrWriter>? args, XdrDecoder<T> decode, CancellationToken cancellationToken)
    {
        var reply = await SendCallAsync(procedure, args, cancellationToken).ConfigureAwait(false);
        var reader = new XdrReader(reply.Payload.Span);
        var value = decode(ref reader);
        reader.EnsureEnd(ApiNames.Of((uint)procedure) + " reply");
        return value;
    }

    /// <summary>Calls a procedure whose reply is <c>(void)</c>.</summary>
    public async Task CallAsync(RemoteProcedure procedure, Action<XdrWriter>? args, CancellationToken cancellationToken)
    {
        var reply = await SendCallAsync(procedure, args, cancellationToken).ConfigureAwait(false);
        new XdrReader(reply.Payload.Span).EnsureEnd(ApiNames.Of((uint)procedure) + " reply");
    }

    private async Task<RemoteMessage> SendCallAsync(RemoteProcedure procedure, Action<XdrWriter>? args, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfBroken();
        var serial = (uint)Interlocked.Increment(ref _nextSerial);
        var message = MessageBuilder.Remote(procedure, RemoteMessageType.Call, serial);
        args?.Invoke(message.Payload);
        var bytes = message.Finish();
        var pending = new TaskCompletionSource<RemoteMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[serial] = pending;
        try
        {
            await SendAsync(bytes, cancellationToken).ConfigureAwait(false);
            var reply = await pending.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (reply.Header.Status == RemoteMessageStatus.Error)
            {
                var reader = new XdrReader(reply.Payload.Span);
                throw RemoteErrorRecord.Read(ref reader).ToError();
            }

            if (reply.Header.Status != RemoteMessageStatus.Ok)
            {
                throw new RemoteProtocolException(RemoteProtocolErrorReason.UnexpectedMessage, $"reply to {ApiNames.Of((uint)procedure)} has status {(uint)reply.Header.Status}");
            }

            return reply;
        }
        finally
        {
            _pending.TryRemove(serial, out _);
        }
    }

    private async Task SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, "the connection to the server is lost", e));
            ThrowIfBroken();
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            while (true)
            {
                var result = await _reader.ReadAsync(_closing.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                try
                {
                    while (MessageFramer.TryRead(ref buffer, RemoteWire.MaxMessageLength, out var message))
                    {
                        Interlocked.Exchange(ref _lastReceived, Environment.TickCount64);
                        await DeliverAsync(message!).ConfigureAwait(false);
                    }
                }
                finally
                {
                    _reader.AdvanceTo(buffer.Start, buffer.End);
                }

                if (result.IsCompleted)
                {
                    Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, "the server closed the connection"));
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, "the connection is closed"));
        }
        catch (RemoteProtocolException e)
        {
            Break(e);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, "the connection to the server is lost", e));
        }
        catch (Exception e)
        {
            // An event handler threw: the receive loop cannot go on without it, so the
            // connection ends and every caller sees why, instead of waiting forever.
            Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, $"the connection was closed after an event handler failed: {e.Message}", e));
        }
    }

    private async Task DeliverAsync(RemoteMessage message)
    {
        var header = message.Header;
        if (header.Program == RemoteWire.KeepaliveProgram)
        {
            if (header.Procedure == (uint)KeepaliveProcedure.Ping)
            {
                var pong = new MessageBuilder(RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Pong, RemoteMessageType.Message, 0, RemoteMessageStatus.Ok);
                await SendAsync(pong.Finish(), _closing.Token).ConfigureAwait(false);
            }

            return;
        }

        if (header.Program != RemoteWire.RemoteProgram || header.Version != RemoteWire.ProgramVersion)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.UnknownProgram, $"message of program {header.Program:x8} version {header.Version} from the server, which was never called");
        }

        switch (header.Type)
        {
            case RemoteMessageType.Reply:
                if (_pending.TryGetValue(header.Serial, out var pending))
                {
                    pending.TrySetResult(message);
                }
                else if (header.Serial > (uint)Volatile.Read(ref _nextSerial))
                {
                    throw new RemoteProtocolException(RemoteProtocolErrorReason.UnexpectedMessage, $"reply with serial {header.Serial}, which was never sent");
                }

                // Otherwise the reply of a call its caller cancelled: nobody waits for it.
                break;
            case RemoteMessageType.Message:
                _onEvent(message);
                break;
            default:
                throw new RemoteProtocolException(RemoteProtocolErrorReason.UnexpectedMessage, $"unexpected message type {(uint)header.Type} from the server");
        }
    }

    private async Task KeepaliveLoopAsync()
    {
        try
        {
            using var timer = new PeriodicTimer(KeepaliveInterval);
            while (await timer.WaitForNextTickAsync(_closing.Token).ConfigureAwait(false))
            {
                var silent = TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _lastReceived));
                if (silent >= KeepaliveInterval * KeepaliveCount)
                {
                    Break(LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "connection closed due to keepalive timeout"));
                    return;
                }

                if (silent >= KeepaliveInterval)
                {
                    var ping = new MessageBuilder(RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Ping, RemoteMessageType.Message, 0, RemoteMessageStatus.Ok);
                    await SendAsync(ping.Finish(), _closing.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or RemoteProtocolException or LibvirtError)
        {
        }
    }

    private void Break(Exception reason)
    {
        Interlocked.CompareExchange(ref _broken, reason, null);
        foreach (var pending in _pending.Values)
        {
            pending.TrySetException(_broken!);
        }

        try
        {
            _closing.Cancel();
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    private void ThrowIfBroken()
    {
        if (_broken is { } broken)
        {
            throw broken is LibvirtError error
                ? LibvirtError.Create(error.Code, error.Domain, error.Message)
                : new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, broken.Message, broken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Break(new RemoteProtocolException(RemoteProtocolErrorReason.ConnectionClosed, "the connection is closed"));
        await _receiveLoop.ConfigureAwait(false);
        await _keepaliveLoop.ConfigureAwait(false);
        await _reader.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        _closing.Dispose();
        _writeLock.Dispose();
    }
}
