using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Server;

/// <summary>
/// Writes transmission replies for one connection. Requests run concurrently; each reply frame
/// is written whole under <see cref="_writeLock"/>, so frames of different requests never
/// interleave byte-wise (chunks of one request are built into one frame and written at once).
/// </summary>
internal sealed class ReplyWriter : IDisposable
{
    // Longest error message sent; proto.md allows 4096 but short messages keep error frames small.
    private const int MaxErrorMessageBytes = 1024;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Stream _stream;

    // The plain socket under the stream (null under TLS, whose bytes the kernel cannot send
    // from a file); used only under _writeLock.
    private readonly BlockingSocketStream? _socket;

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
