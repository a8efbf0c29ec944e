using System.Buffers;
using System.Collections.Concurrent;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Client;

/// <summary>
/// An NBD client connection in transmission (formats.md §4.4, §4.5). Requests may be issued
/// concurrently: each is sent whole under a send lock, and one reply loop matches replies to
/// requests by cookie, so many requests are in flight at once (pipelining). Structured and
/// simple replies are both understood. Any protocol violation by the server makes the client
/// <see cref="NbdClientState.Dead"/> and fails every pending request.
/// </summary>
/// <remarks>
/// Every request method is allowed only in <see cref="NbdClientState.Ready"/>, checks its flags
/// against the ones the command takes and the export advertises, and its range against
/// <see cref="Size"/>, before anything is sent. NBD cannot cancel a request once sent:
/// cancelling a call stops the wait only, and a READ buffer may still be written until the
/// server's reply has arrived.
/// </remarks>
public sealed partial class NbdClient : IAsyncDisposable
{
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<ulong, PendingRequest> _pending = new();
    private readonly NbdStreamReader _reader;
    private Stream _stream;
    private Task? _replyLoop;
    private long _nextCookie;
    private bool _noZeroes;
    private Exception? _deathCause;

    private NbdClient(Stream stream)
    {
        _stream = stream;
        _reader = new NbdStreamReader(stream, 256 * 1024);
    }

    public NbdClientState State { get; private set; } = NbdClientState.Negotiating;

    /// <summary>The export's size in bytes.</summary>
    public long Size { get; private set; }

    /// <summary>The export's canonical name (NBD_INFO_NAME when sent, else the name asked for).</summary>
    public string ExportName { get; private set; } = string.Empty;

    /// <summary>NBD_INFO_DESCRIPTION, when the server sent one.</summary>
    public string? Description { get; private set; }

    public NbdTransmissionFlags TransmissionFlags { get; private set; }

    /// <summary>Structured replies were negotiated.</summary>
    public bool Structured { get; private set; }

    /// <summary>TLS is in use.</summary>
    public bool IsTls { get; private set; }

    /// <summary>Whether the server's greeting offered NO_ZEROES (and so the client set it).</summary>
    public bool NoZeroes => _noZeroes;

    public uint MinimumBlockSize { get; private set; } = 1;

    public uint PreferredBlockSize { get; private set; } = 4096;

    /// <summary>The largest READ/WRITE payload; 32 MiB when the server did not say (proto.md default).</summary>
    public uint MaximumBlockSize { get; private set; } = 32 * 1024 * 1024;

    /// <summary>The selected meta contexts with the ids the server gave them.</summary>
    public IReadOnlyDictionary<string, uint> MetaContexts { get; private set; } = new Dictionary<string, uint>();

    public bool IsReadOnly => (TransmissionFlags & NbdTransmissionFlags.ReadOnly) != 0;

    public bool CanMultiConn => (TransmissionFlags & NbdTransmissionFlags.CanMultiConn) != 0;

    /// <summary>Reads <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> (states: Ready; flags: DF).</summary>
    /// <exception cref="NbdException">RequestFailed with the server's error, or the connection died.</exception>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.Read, offset, buffer.Length, flags, NbdCommandFlags.DontFragment);
        if (buffer.Length > MaximumBlockSize)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, $"read of {buffer.Length} bytes is over the server's maximum {MaximumBlockSize}");
        }

        var pending = new PendingRequest(NbdCommand.Read, offset, buffer);
        await SendAsync(pending, flags, (uint)buffer.Length, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/> (states: Ready; flags: FUA).</summary>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.Write, offset, data.Length, flags, NbdCommandFlags.Fua);
        CheckWritable();
        if (data.Length > MaximumBlockSize)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, $"write of {data.Length} bytes is over the server's maximum {MaximumBlockSize}");
        }

        var pending = new PendingRequest(NbdCommand.Write, offset, Memory<byte>.Empty);
        await SendAsync(pending, flags, (uint)data.Length, data, cancellationToken).ConfigureAwait(false);
        await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Makes the range read as zeroes (states: Ready; flags: FUA, NO_HOLE, FAST_ZERO).</summary>
    public ValueTask WriteZeroesAsync(long offset, uint length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.WriteZeroes, offset, length, flags, NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.FastZero);
        CheckWritable();
        return SimpleCommandAsync(NbdCommand.WriteZeroes, offset, length, flags, cancellationToken);
    }

    /// <summary>Discards the range (states: Ready; flags: FUA).</summary>
    public ValueTask TrimAsync(long offset, uint length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.Trim, offset, length, flags, NbdCommandFlags.Fua);
        CheckWritable();
        return SimpleCommandAsync(NbdCommand.Trim, offset, length, flags, cancellationToken);
    }

    /// <summary>Asks the server to prefetch the range (states: Ready).</summary>
    public ValueTask CacheAsync(long offset, uint length, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.Cache, offset, length, NbdCommandFlags.None, NbdCommandFlags.None);
        return SimpleCommandAsync(NbdCommand.Cache, offset, length, NbdCommandFlags.None, cancellationToken);
    }

    /// <summary>Makes every write already replied to durable (states: Ready).</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        CheckState();
        return SimpleCommandAsync(NbdCommand.Flush, 0, 0, NbdCommandFlags.None, cancellationToken);
    }

    /// <summary>
    /// Block status of the range for every selected context (states: Ready with at least one
    /// context; flags: REQ_ONE). The result maps each context name to its extents, which start at
    /// <paramref name="offset"/> and may cover less than asked (ask again from where they end).
    /// </summary>
    public async ValueTask<IReadOnlyDictionary<string, IReadOnlyList<NbdBlockExtent>>> BlockStatusAsync(long offset, uint length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        CheckRequest(NbdCommand.BlockStatus, offset, length, flags, NbdCommandFlags.ReqOne);
        if (MetaContexts.Count == 0)
        {
            throw new NbdException(NbdErrorReason.InvalidState, "block status needs a meta context selected when connecting");
        }

        var pending = new PendingRequest(NbdCommand.BlockStatus, offset, Memory<byte>.Empty);
        await SendAsync(pending, flags, length, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        var byName = new Dictionary<string, IReadOnlyList<NbdBlockExtent>>(StringComparer.Ordinal);
        foreach (var (name, id) in MetaContexts)
        {
            if (pending.Extents is not null && pending.Extents.TryGetValue(id, out var extents))
            {
                byName[name] = extents;
            }
        }

        return byName;
    }

    /// <summary>Sends NBD_CMD_DISC after the pending requests have completed, then closes (states: Ready).</summary>
    public async ValueTask DisconnectAsync(CancellationToken cancellationToken = default)
    {
        if (State != NbdClientState.Ready)
        {
            return;
        }

        // proto.md: the client sends DISC only once every request has been answered.
        while (!_pending.IsEmpty)
        {
            await Task.WhenAll(_pending.Values.Select(p => p.Completion.Task)).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            cancellationToken.ThrowIfCancellationRequested();
        }

        var header = new byte[NbdWire.RequestLength];
        new NbdRequest(NbdCommandFlags.None, NbdCommand.Disconnect, (ulong)Interlocked.Increment(ref _nextCookie), 0, 0).Encode(header);
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            State = NbdClientState.Closed;
            await _stream.WriteAsync(header, cancellationToken).ConfigureAwait(false);
            await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The server may close first; DISC has no reply.
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (State == NbdClientState.Ready)
        {
            try
            {
                await DisconnectAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or NbdException)
            {
            }
        }

        if (State != NbdClientState.Dead)
        {
            State = NbdClientState.Closed;
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
        if (_replyLoop is not null)
        {
            await _replyLoop.ConfigureAwait(false);
        }

        Fail(new NbdException(NbdErrorReason.ConnectionClosed, "the client was closed"));
        _reader.Dispose();
        _sendLock.Dispose();
    }

    private async ValueTask SimpleCommandAsync(NbdCommand command, long offset, uint length, NbdCommandFlags flags, CancellationToken cancellationToken)
    {
        var pending = new PendingRequest(command, offset, Memory<byte>.Empty);
        await SendAsync(pending, flags, length, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask SendAsync(PendingRequest pending, NbdCommandFlags flags, uint length, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var cookie = (ulong)Interlocked.Increment(ref _nextCookie);
        pending.Length = length;
        _pending[cookie] = pending;
        var request = new NbdRequest(flags, pending.Command, cookie, (ulong)pending.Offset, length);

        // Header and a small payload go in one write; a large payload follows in a second write
        // from the caller's memory (no copy).
        const int CoalesceLimit = 64 * 1024;
        var frameLength = NbdWire.RequestLength + (payload.Length <= CoalesceLimit ? payload.Length : 0);
        var frame = ArrayPool<byte>.Shared.Rent(frameLength);
        try
        {
            request.Encode(frame);
            if (payload.Length <= CoalesceLimit)
            {
                payload.Span.CopyTo(frame.AsSpan(NbdWire.RequestLength));
            }

            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                CheckState();
                await _stream.WriteAsync(frame.AsMemory(0, frameLength), CancellationToken.None).ConfigureAwait(false);
                if (payload.Length > CoalesceLimit)
                {
                    await _stream.WriteAsync(payload, CancellationToken.None).ConfigureAwait(false);
                }
            }
            finally
            {
                _sendLock.Release();
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            _pending.TryRemove(cookie, out _);
            Die(new NbdException(NbdErrorReason.ConnectionClosed, $"cannot send a request: {e.Message}", e));
            throw _deathCause!;
        }
        catch
        {
            _pending.TryRemove(cookie, out _);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(frame);
        }
    }

    private void CheckState()
    {
        if (State != NbdClientState.Ready)
        {
            if (State == NbdClientState.Dead && _deathCause is not null)
            {
                throw new NbdException(NbdErrorReason.ConnectionClosed, $"the connection is dead: {_deathCause.Message}", _deathCause);
            }

            throw new NbdException(NbdErrorReason.InvalidState, $"the client is {State}, requests need Ready");
        }
    }

    private void CheckRequest(NbdCommand command, long offset, long length, NbdCommandFlags flags, NbdCommandFlags allowed)
    {
        CheckState();
        if ((flags & ~allowed) != 0)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, $"flags 0x{(ushort)(flags & ~allowed):x} are not allowed with {command}");
        }

        if ((flags & NbdCommandFlags.DontFragment) != 0 && !Structured)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, "DF needs structured replies");
        }

        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, $"{command} {offset}+{length} is outside the export (size {Size})");
        }
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new NbdException(NbdErrorReason.InvalidArgument, $"export '{ExportName}' is read-only");
        }
    }

    /// <summary>One request waiting for its reply; the reply loop fills it in.</summary>
    private sealed class PendingRequest(NbdCommand command, long offset, Memory<byte> buffer)
    {
        public NbdCommand Command { get; } = command;

        public long Offset { get; } = offset;

        public Memory<byte> Buffer { get; } = buffer;

        public uint Length { get; set; }

        /// <summary>READ: bytes covered by data and hole chunks so far.</summary>
        public long Covered { get; set; }

        /// <summary>The first error chunk's error and message.</summary>
        public NbdException? Error { get; set; }

        public Dictionary<uint, IReadOnlyList<NbdBlockExtent>>? Extents { get; set; }

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
