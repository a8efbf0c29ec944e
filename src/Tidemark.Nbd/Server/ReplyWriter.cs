using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Server;

/// <summary>
/// Writes transmission replies for one connection. Requests run concurrently; each reply frame
/// is written whole under <see cref="_writeLock"/>, so frames of different requests never
/// interleave byte-wise (chunks of one request are built into one frame and written at once).
/// </summary>
/// <remarks>
/// On a connection's own thread (<see cref="DeferOnThisThread"/>), small replies made there are
/// held back while the thread still has requests in hand, and sent together when it would wait
/// for the client (<see cref="SendDeferred"/>), once <see cref="MaxDeferredReplies"/> have
/// gathered, or once the first has waited <see cref="MaxDeferredMicroseconds"/> (checked before
/// each request the thread reads, <see cref="SendDeferredIfDue"/>). A client that queued several
/// requests then gets their replies in one write and is woken once rather than once per reply:
/// each wake-up of a client asleep in poll(2) costs both sides a context switch, which under a
/// hypervisor takes several microseconds, as long as a 4 KiB write into the page cache. A reply
/// is held only once its request is done, so holding it never acknowledges anything early; any
/// other write sends the held replies first. The cost: a request carried out on the thread that
/// blocks (a write the kernel throttles for its dirty-page limit) holds the replies before it for
/// as long as it blocks, as it holds every request behind it in any case.
/// </remarks>
internal sealed class ReplyWriter : IDisposable
{
    // Longest error message sent; proto.md allows 4096 but short messages keep error frames small.
    private const int MaxErrorMessageBytes = 1024;

    /// <summary>Replies held back at most: the first of them waits for the next fifteen requests to be carried out.</summary>
    public const int MaxDeferredReplies = 16;

    /// <summary>How long a reply may be held back while the thread carries out the requests in hand.</summary>
    public const int MaxDeferredMicroseconds = 100;

    private static readonly long MaxDeferredTicks = Stopwatch.Frequency * MaxDeferredMicroseconds / 1_000_000;

    /// <summary>Longest reply held back: simple replies, error chunks and short block-status replies.</summary>
    private const int MaxDeferredFrameBytes = 512;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Stream _stream;

    // The plain socket under the stream (null under TLS, whose bytes the kernel cannot send
    // from a file); used only under _writeLock.
    private readonly BlockingSocketStream? _socket;

    // Replies held back (see the remarks), made on the thread _deferringThread. Guarded by
    // _writeLock; _deferredCount is also read without it by that thread, the only one that
    // adds to it.
    private byte[]? _deferred;
    private int _deferredLength;
    private int _deferredCount;
    private int _deferringThread = -1;
    private long _deferredSince;
    private CancellationToken _deferredToken;

    public ReplyWriter(Stream stream, bool structured)
    {
        _stream = stream;
        Structured = structured;
        _socket = stream as BlockingSocketStream;
    }

    /// <summary>Structured replies were negotiated.</summary>
    public bool Structured { get; }

    /// <summary>Frames may carry host-file ranges (<see cref="WritePacketsAsync"/>): the transport is a plain socket.</summary>
    public bool CanSendFile => _socket is not null;

    /// <summary>
    /// Holds back small replies made on the calling thread from now on, until
    /// <see cref="SendDeferred"/>. Only from the thread that reads the requests, on a transport
    /// whose writes block (<see cref="BlockingSocketStream"/>, maybe under TLS).
    /// </summary>
    /// <param name="cancellationToken">The connection's: it aborts a send of held replies that waits for a client that does not read.</param>
    public void DeferOnThisThread(CancellationToken cancellationToken)
    {
        _deferred = new byte[MaxDeferredReplies * MaxDeferredFrameBytes];
        _deferringThread = Environment.CurrentManagedThreadId;
        _deferredToken = cancellationToken;
    }

    /// <summary>Sends the replies held back, if any; the caller is about to wait for the client.</summary>
    /// <exception cref="NbdException">ConnectionClosed: the transport failed; the connection is lost.</exception>
    /// <exception cref="OperationCanceledException">The connection's token aborted the send.</exception>
    public void SendDeferred()
    {
        if (Volatile.Read(ref _deferredCount) == 0)
        {
            return;
        }

        _writeLock.Wait();
        try
        {
            SendDeferredLocked();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw new NbdException(NbdErrorReason.ConnectionClosed, $"cannot write a reply: {e.Message}", e);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Sends the replies held back if the first has waited <see cref="MaxDeferredMicroseconds"/>.</summary>
    /// <exception cref="NbdException">ConnectionClosed: the transport failed; the connection is lost.</exception>
    public void SendDeferredIfDue()
    {
        if (Volatile.Read(ref _deferredCount) != 0 && Stopwatch.GetTimestamp() - Volatile.Read(ref _deferredSince) > MaxDeferredTicks)
        {
            SendDeferred();
        }
    }

    /// <summary>
    /// Writes one frame made of buffer slices and host-file ranges, atomically with respect to
    /// other replies. The kernel sends file ranges straight from the page cache (sendfile), so
    /// READ data is never copied through user memory.
    /// </summary>
    /// <param name="length">The frame's length: a file that shrank under the send leaves it
    /// short, the framing is lost and the connection with it.</param>
    /// <exception cref="NbdException">ConnectionClosed: the transport failed or the frame came out short.</exception>
    public async ValueTask WritePacketsAsync(SendPacketsElement[] elements, long length, CancellationToken cancellationToken)
    {
        if (_socket is null)
        {
            throw new InvalidOperationException("file ranges can only be sent on a plain socket");
        }

        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            SendDeferredLocked();
            var sent = _socket.SendPackets(elements, cancellationToken);
            if (sent != length)
            {
                throw new NbdException(NbdErrorReason.ConnectionClosed, $"a reply came out short ({sent} of {length} bytes): the image file shrank");
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw new NbdException(NbdErrorReason.ConnectionClosed, $"cannot write a reply: {e.Message}", e);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Writes one fully formed frame atomically with respect to other replies.</summary>
    /// <exception cref="NbdException">ConnectionClosed: the transport failed; the connection is lost.</exception>
    public async ValueTask WriteFrameAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_deferred is { } deferred && frame.Length <= MaxDeferredFrameBytes)
            {
                // Held back on the deferring thread; elsewhere sent with the held replies in one write.
                if (_deferredCount == 0)
                {
                    Volatile.Write(ref _deferredSince, Stopwatch.GetTimestamp());
                }

                frame.Span.CopyTo(deferred.AsSpan(_deferredLength));
                _deferredLength += frame.Length;
                Volatile.Write(ref _deferredCount, _deferredCount + 1);
                if (Environment.CurrentManagedThreadId != _deferringThread || _deferredCount == MaxDeferredReplies)
                {
                    SendDeferredLocked();
                }

                return;
            }

            SendDeferredLocked();
            await _stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException)
        {
            throw new NbdException(NbdErrorReason.ConnectionClosed, $"cannot write a reply: {e.Message}", e);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void SendDeferredLocked()
    {
        if (_deferredCount == 0)
        {
            return;
        }

        var length = _deferredLength;
        _deferredLength = 0;
        Volatile.Write(ref _deferredCount, 0);

        // Through WriteAsync, which on a blocking transport writes on this thread, so that the
        // connection's token can abort a send stuck behind a client that stopped reading (as
        // BlockingSocketStream aborts it); the replies are only 16 bytes each, but the socket's
        // buffer may already be full of read data.
        _stream.WriteAsync(_deferred.AsMemory(0, length), _deferredToken).AsTask().GetAwaiter().GetResult();
    }

    /// <summary>A successful reply without payload: a simple reply, which structured clients also accept.</summary>
    public async ValueTask WriteSuccessAsync(ulong cookie, CancellationToken cancellationToken)
    {
        var frame = PayloadPool.Shared.Rent(NbdWire.SimpleReplyLength);
        try
        {
            EncodeSimpleReply(frame, NbdErrno.None, cookie);
            await WriteFrameAsync(frame.AsMemory(0, NbdWire.SimpleReplyLength), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            PayloadPool.Shared.Return(frame);
        }
    }

    /// <summary>
    /// An error reply: an ERROR chunk carrying <paramref name="message"/> when structured replies
    /// were negotiated, else a simple reply with the error value only.
    /// </summary>
    public async ValueTask WriteErrorAsync(ulong cookie, NbdErrno error, string message, CancellationToken cancellationToken)
    {
        if (!Structured)
        {
            var simple = PayloadPool.Shared.Rent(NbdWire.SimpleReplyLength);
            try
            {
                EncodeSimpleReply(simple, error, cookie);
                await WriteFrameAsync(simple.AsMemory(0, NbdWire.SimpleReplyLength), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                PayloadPool.Shared.Return(simple);
            }

            return;
        }

        var text = Encoding.UTF8.GetBytes(message);
        var messageLength = Math.Min(text.Length, MaxErrorMessageBytes);
        var payload = NbdWire.ErrorPrefixLength + messageLength;
        var length = NbdWire.ChunkHeaderLength + payload;
        var frame = PayloadPool.Shared.Rent(length);
        try
        {
            var span = frame.AsSpan(0, length);
            EncodeChunkHeader(span, NbdReplyFlags.Done, NbdReplyChunkType.Error, cookie, (uint)payload);
            BinaryPrimitives.WriteUInt32BigEndian(span[NbdWire.ChunkHeaderLength..], (uint)error);
            BinaryPrimitives.WriteUInt16BigEndian(span[(NbdWire.ChunkHeaderLength + 4)..], (ushort)messageLength);
            text.AsSpan(0, messageLength).CopyTo(span[(NbdWire.ChunkHeaderLength + NbdWire.ErrorPrefixLength)..]);
            await WriteFrameAsync(frame.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            PayloadPool.Shared.Return(frame);
        }
    }

    /// <summary>u32 magic, u32 error, u64 cookie.</summary>
    public static void EncodeSimpleReply(Span<byte> destination, NbdErrno error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
    }

    /// <summary>u32 magic, u16 flags, u16 type, u64 cookie, u32 payload length.</summary>
    public static void EncodeChunkHeader(Span<byte> destination, NbdReplyFlags flags, NbdReplyChunkType type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], length);
    }

    public void Dispose() => _writeLock.Dispose();
}
