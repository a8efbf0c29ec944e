using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Tidemark.Nbd.Protocol;
using Tidemark.Storage;

namespace Tidemark.Nbd.Server;

/// <summary>
/// The transmission phase of one connection (formats.md §4.4, §4.5), in four steps per request:
/// read, validate, execute, reply. Reading is sequential; each valid request then executes
/// concurrently (up to <see cref="NbdServerLimits.MaxInFlightRequestsPerConnection"/>) and
/// writes its reply through the <see cref="ReplyWriter"/>, so replies may come out of order as
/// the protocol allows. An invalid request gets an error reply after its payload has been read
/// and dropped, so the stream stays framed; only a bad magic or a short read ends the connection.
/// On a server's own connections this runs on the connection's thread
/// (<see cref="BlockingSocketStream"/>): a request that never waits (a write into the page
/// cache) is carried out and answered there before the next is read; one that waits (a lock,
/// a read from the disk) lets the thread read on, and finishes on the thread pool.
/// </summary>
internal sealed partial class TransmissionPhase : IDisposable
{
    private readonly ServerConnection _connection;
    private readonly NegotiatedExport _negotiated;
    private readonly ILogger _logger;
    private readonly ReplyWriter _replies;
    private readonly IBlockImage _image;
    private readonly long _size;
    private readonly int _maxInFlight;
    private readonly SemaphoreSlim _inFlight;

    // Set when a reply could not be written: the connection is lost, stop reading requests.
    private readonly CancellationTokenSource _broken = new();

    public TransmissionPhase(ServerConnection connection, NegotiatedExport negotiated, ILogger logger)
    {
        _connection = connection;
        _negotiated = negotiated;
        _logger = logger;
        _replies = new ReplyWriter(connection.Stream, negotiated.Structured);
        _image = negotiated.Export.Image;
        _size = _image.VirtualSize;
        _maxInFlight = connection.Limits.MaxInFlightRequestsPerConnection;
        _inFlight = new SemaphoreSlim(_maxInFlight, _maxInFlight);
    }

    private NbdServerLimits Limits => _connection.Limits;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _broken.Token);
        var token = linked.Token;
        var header = new byte[NbdWire.RequestLength];
        if (_connection.Blocks)
        {
            _replies.DeferOnThisThread(token);
        }

        try
        {
            while (true)
            {
                // 1. Read. Replies held back go out before the thread waits for the client.
                SendDeferredUnless(NbdWire.RequestLength);
                if (!await _connection.Reader.TryReadExactAsync(header, token).ConfigureAwait(false))
                {
                    _logger.LogDebug("{Peer}: client closed the connection without NBD_CMD_DISC", _connection.Peer);
                    return;
                }

                if (!NbdRequest.TryDecode(header, out var request, out var magic))
                {
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"request magic is 0x{magic:x8}, expected 0x{NbdMagic.Request:x8}");
                }

                // 2. Validate.
                var (error, why) = Validate(request);
                if (error != NbdErrno.None)
                {
                    _logger.LogInformation("{Peer}: invalid request: {Command}: {Why}", _connection.Peer, CommandName(request.Command), why);
                    SendDeferredUnless((int)Math.Min(request.PayloadLength, int.MaxValue));
                    await _connection.Reader.SkipAsync(request.PayloadLength, token).ConfigureAwait(false);
                    await _replies.WriteErrorAsync(request.Cookie, error, why, token).ConfigureAwait(false);
                    continue;
                }

                if (request.Command == NbdCommand.Disconnect)
                {
                    _logger.LogDebug("{Peer}: client sent NBD_CMD_DISC", _connection.Peer);
                    return;
                }

                await WaitForSlotAsync(token).ConfigureAwait(false);

                byte[]? payload = null;
                if (request.Command == NbdCommand.Write)
                {
                    payload = PayloadPool.Shared.Rent((int)request.Length);
                    try
                    {
                        SendDeferredUnless((int)request.Length);
                        await _connection.Reader.ReadExactAsync(payload.AsMemory(0, (int)request.Length), token).ConfigureAwait(false);
                    }
                    catch
                    {
                        PayloadPool.Shared.Return(payload);
                        _inFlight.Release();
                        throw;
                    }
                }

                // 3 and 4 run concurrently with the next read; ExecuteAsync never throws. On the
                // connection's own thread a small request runs here until it waits, if ever: a
                // hand-off would cost more than the request. A long one goes to the thread pool
                // at once, so that the thread reads the next requests meanwhile.
                if (_connection.Blocks && TakesLong(request))
                {
                    ThreadPool.UnsafeQueueUserWorkItem(static state => _ = state.Phase.ExecuteAsync(state.Request, state.Payload, state.Token), (Phase: this, Request: request, Payload: payload, Token: token), preferLocal: false);
                }
                else
                {
                    _ = ExecuteAsync(request, payload, token);
                }
            }
        }
        catch (OperationCanceledException) when (_broken.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new NbdException(NbdErrorReason.ConnectionClosed, "a reply could not be written: the connection is lost");
        }
        finally
        {
            // The protocol: on DISC the server finishes in-flight requests, then closes. On any
            // other end, waiting keeps buffers from returning to the pool while still in use.
            for (var i = 0; i < _maxInFlight; i++)
            {
                await WaitForSlotAsync(CancellationToken.None).ConfigureAwait(false);
            }

            SendDeferredOrBreak();
        }
    }

    public void Dispose()
    {
        _broken.Dispose();
        _inFlight.Dispose();
        _replies.Dispose();
    }

    /// <summary>
    /// Takes an in-flight slot. On a blocking transport the connection's own thread waits for it
    /// synchronously: there is nothing else for it to do (<see cref="BlockingSocketStream"/>).
    /// </summary>
    private ValueTask WaitForSlotAsync(CancellationToken cancellationToken)
    {
        if (_connection.Blocks)
        {
            if (!_inFlight.Wait(0, CancellationToken.None))
            {
                // Every slot is taken: the held replies go out before the thread waits.
                SendDeferredOrBreak();
                _inFlight.Wait(cancellationToken);
            }

            return ValueTask.CompletedTask;
        }

        return new ValueTask(_inFlight.WaitAsync(cancellationToken));
    }

    /// <summary>
    /// Sends the replies held back unless the next <paramref name="bytes"/> the thread reads are
    /// already buffered, so that reading them cannot wait for the client (and they have not been
    /// held too long).
    /// </summary>
    private void SendDeferredUnless(int bytes)
    {
        if (_connection.Reader.Buffered < bytes)
        {
            _replies.SendDeferred();
        }
        else
        {
            _replies.SendDeferredIfDue();
        }
    }

    /// <summary>Sends the replies held back; a transport that fails (or a send aborted as the connection ends) breaks the connection, as a failed reply does.</summary>
    private void SendDeferredOrBreak()
    {
        try
        {
            _replies.SendDeferred();
        }
        catch (Exception e) when (e is NbdException or OperationCanceledException)
        {
            Break();
        }
    }

    /// <summary>
    /// A request worth a thread hand-off: a flush or FUA (an fdatasync, milliseconds), or one
    /// that moves <see cref="LongRequestBytes"/> or more (a 1 MiB write copies for about as
    /// long as twenty 4 KiB writes take in all).
    /// </summary>
    private static bool TakesLong(in NbdRequest request)
        => request.Command == NbdCommand.Flush || (request.Flags & NbdCommandFlags.Fua) != 0 || request.Length >= LongRequestBytes;

    private const uint LongRequestBytes = 64 * 1024;

    /// <summary>Checks a request completely, so that execution can rely on it (formats.md §4.4, §4.6).</summary>
    internal (NbdErrno Error, string Why) Validate(in NbdRequest request)
    {
        var command = request.Command;
        var flags = request.Flags;
        var export = _negotiated.Export;

        var allowed = command switch
        {
            NbdCommand.Read => NbdCommandFlags.DontFragment,
            NbdCommand.Write => NbdCommandFlags.Fua,
            NbdCommand.Disconnect or NbdCommand.Flush or NbdCommand.Cache => NbdCommandFlags.None,
            NbdCommand.Trim => NbdCommandFlags.Fua,
            NbdCommand.WriteZeroes => NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.FastZero,
            NbdCommand.BlockStatus => NbdCommandFlags.ReqOne,
            _ => (NbdCommandFlags?)null,
        };
        if (allowed is null)
        {
            return (NbdErrno.EINVAL, $"invalid request type ({(ushort)command}) received");
        }

        if ((flags & ~allowed.Value) != 0)
        {
            return (NbdErrno.EINVAL, $"unsupported flags 0x{(ushort)(flags & ~allowed.Value):x} for this command");
        }

        if ((flags & NbdCommandFlags.DontFragment) != 0 && !_negotiated.Structured)
        {
            return (NbdErrno.EINVAL, "DF flag needs structured replies");
        }

        if (command is NbdCommand.Disconnect or NbdCommand.Flush)
        {
            return request.Offset == 0 && request.Length == 0
                ? (NbdErrno.None, string.Empty)
                : (NbdErrno.EINVAL, $"offset {request.Offset} and length {request.Length} must be 0");
        }

        // proto.md leaves a zero-length request unspecified. qemu-nbd 7.2 does nothing and
        // replies success; this server refuses it, as nbdkit does: it has no effect to give, and
        // QEMU's block layer completes a zero-byte request without sending it.
        if (request.Length == 0)
        {
            return (NbdErrno.EINVAL, "length is 0");
        }

        if (command is NbdCommand.Read or NbdCommand.Write && request.Length > Limits.MaxPayloadLength)
        {
            return (NbdErrno.EINVAL, $"request length {request.Length} is over the maximum payload {Limits.MaxPayloadLength}");
        }

        if (request.Offset > (ulong)_size || request.Length > (ulong)_size - request.Offset)
        {
            // nbdkit's choice, as proto.md suggests: ENOSPC for writes past the end, EINVAL
            // otherwise. qemu-nbd 7.2 replies EINVAL to both; QEMU's own client never sends
            // either, so the spec's answer is kept.
            var error = command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
            return (error, $"operation past EOF; From: {request.Offset}, Len: {request.Length}, Size: {_size}");
        }

        if (command is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes && export.ReadOnly)
        {
            // proto.md asks for EPERM; qemu sends EINVAL (formats.md §4.5). EPERM tells the client why.
            return (NbdErrno.EPERM, "export is read-only");
        }

        if (command == NbdCommand.BlockStatus && _negotiated.Contexts.Count == 0)
        {
            return (NbdErrno.EINVAL, "no meta context was negotiated");
        }

        return (NbdErrno.None, string.Empty);
    }

    private async Task ExecuteAsync(NbdRequest request, byte[]? payload, CancellationToken cancellationToken)
    {
        var startedAt = Stopwatch.GetTimestamp();
        var statistics = _negotiated.Export.Statistics;
        try
        {
            switch (request.Command)
            {
                case NbdCommand.Read:
                    await ReadAsync(request, cancellationToken).ConfigureAwait(false);
                    statistics?.Completed(NbdCommand.Read, request.Length, startedAt);
                    return;
                case NbdCommand.Write:
                    await _image.WriteAsync((long)request.Offset, payload.AsMemory(0, (int)request.Length), WriteFlagsOf(request.Flags), cancellationToken).ConfigureAwait(false);
                    break;
                case NbdCommand.Flush:
                    // A read-only export has written nothing to flush (and a read-only image may refuse).
                    if (!_negotiated.Export.ReadOnly)
                    {
                        await _image.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case NbdCommand.Trim:
                    await _image.DiscardAsync((long)request.Offset, request.Length, cancellationToken).ConfigureAwait(false);
                    if ((request.Flags & NbdCommandFlags.Fua) != 0)
                    {
                        await _image.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case NbdCommand.Cache:
                    // A prefetch hint: the image is read on demand from the page cache anyway.
                    break;
                case NbdCommand.WriteZeroes:
                    await _image.WriteZeroesAsync((long)request.Offset, request.Length, WriteFlagsOf(request.Flags), cancellationToken).ConfigureAwait(false);
                    break;
                case NbdCommand.BlockStatus:
                    await BlockStatusAsync(request, cancellationToken).ConfigureAwait(false);
                    return;
            }

            await _replies.WriteSuccessAsync(request.Cookie, cancellationToken).ConfigureAwait(false);
            statistics?.Completed(request.Command, request.Length, startedAt);
        }
        catch (NbdException e) when (e.Reason == NbdErrorReason.ConnectionClosed)
        {
            Break();
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            await FailAsync(request, e, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The connection is going away; nobody waits for this reply.
        }
        finally
        {
            if (payload is not null)
            {
                PayloadPool.Shared.Return(payload);
            }

            _inFlight.Release();
        }
    }

    /// <summary>Logs the real cause, then replies with the mapped NBD error; a failed reply breaks the connection.</summary>
    private async Task FailAsync(NbdRequest request, Exception cause, CancellationToken cancellationToken)
    {
        var errno = ErrnoOf(cause);
        _logger.LogWarning("{Peer}: {Command} {Offset}+{Length} failed ({Errno}): {Cause}", _connection.Peer, CommandName(request.Command), request.Offset, request.Length, errno, cause.Message);
        try
        {
            await _replies.WriteErrorAsync(request.Cookie, errno, cause.Message, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NbdException or OperationCanceledException)
        {
            Break();
        }
    }

    private void Break()
    {
        try
        {
            _broken.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Maps a failure to the small NBD error set. Reply writes that fail are transport failures:
    /// they break the connection and get no reply.
    /// </summary>
    internal static NbdErrno ErrnoOf(Exception e) => e switch
    {
        StorageException { Reason: StorageErrorReason.ReadOnly or StorageErrorReason.Locked } => NbdErrno.EPERM,
        StorageException { Reason: StorageErrorReason.InvalidRequest } => NbdErrno.EINVAL,
        NotSupportedException => NbdErrno.ENOTSUP,
        ArgumentOutOfRangeException => NbdErrno.EINVAL,
        InvalidOperationException => NbdErrno.EPERM,
        UnauthorizedAccessException => NbdErrno.EPERM,
        OutOfMemoryException => NbdErrno.ENOMEM,
        IOException io when IsNoSpace(io) => NbdErrno.ENOSPC,
        _ => NbdErrno.EIO,
    };

    // ENOSPC or EDQUOT, or a message that says so where the errno was lost on the way.
    private static bool IsNoSpace(IOException e) => HostErrno.IsNoSpace(e) || e.Message.Contains("No space left", StringComparison.Ordinal);

    private static WriteFlags WriteFlagsOf(NbdCommandFlags flags)
    {
        var result = WriteFlags.None;
        if ((flags & NbdCommandFlags.Fua) != 0)
        {
            result |= WriteFlags.ForceUnitAccess;
        }

        if ((flags & NbdCommandFlags.NoHole) == 0)
        {
            result |= WriteFlags.MayUnmap;
        }

        if ((flags & NbdCommandFlags.FastZero) != 0)
        {
            result |= WriteFlags.FastZero;
        }

        return result;
    }

    private static string CommandName(NbdCommand command) => command switch
    {
        NbdCommand.Read => "NBD_CMD_READ",
        NbdCommand.Write => "NBD_CMD_WRITE",
        NbdCommand.Disconnect => "NBD_CMD_DISC",
        NbdCommand.Flush => "NBD_CMD_FLUSH",
        NbdCommand.Trim => "NBD_CMD_TRIM",
        NbdCommand.Cache => "NBD_CMD_CACHE",
        NbdCommand.WriteZeroes => "NBD_CMD_WRITE_ZEROES",
        NbdCommand.BlockStatus => "NBD_CMD_BLOCK_STATUS",
        _ => $"command {(ushort)command}",
    };
}
