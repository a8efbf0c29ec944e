using System.Buffers;
using System.Buffers.Binary;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// Cuts whole messages out of received bytes. The length word is judged as soon as its 4
/// bytes are in, so an oversized message is refused without its payload ever being buffered;
/// the rest of the header is judged once its 28 bytes are in. "Not enough bytes yet" is a
/// false return, not an error.
/// </summary>
public static class MessageFramer
{
    /// <summary>
    /// Takes one message off the front of <paramref name="buffer"/> when it is complete.
    /// </summary>
    /// <exception cref="RemoteProtocolException">The header is malformed; the stream can no longer be trusted.</exception>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, int maxLength, out RemoteMessage? message)
    {
        message = null;
        if (buffer.Length < RemoteWire.LengthWordSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[RemoteWire.HeaderLength];
        buffer.Slice(0, RemoteWire.LengthWordSize).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (length > (uint)maxLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooLarge, $"packet {length} bytes received from client too large, the maximum is {maxLength}");
        }

        if (length < RemoteWire.HeaderLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooShort, $"packet length {length} is shorter than the {RemoteWire.HeaderLength}-byte header");
        }

        if (buffer.Length < RemoteWire.HeaderLength)
        {
            return false;
        }

        buffer.Slice(0, RemoteWire.HeaderLength).CopyTo(header);
        var parsed = MessageHeader.Read(header);
        parsed.Validate(maxLength);
        if (buffer.Length < length)
        {
            return false;
        }

        if (parsed.Type == RemoteMessageType.CallWithFds)
        {
            return TryReadWithFds(ref buffer, parsed, out message);
        }

        var payload = buffer.Slice(RemoteWire.HeaderLength, parsed.PayloadLength).ToArray();
        buffer = buffer.Slice(length);
        message = new RemoteMessage(parsed, payload);
        return true;
    }

    /// <summary>
    /// A CALL_WITH_FDS: the descriptor count (u32, right after the header, before the arguments)
    /// and the count's data bytes after the message, one per descriptor, which carried them and
    /// are taken off with it (virnetmessage.c, virsocket.c: one byte and one SCM_RIGHTS each).
    /// </summary>
    private static bool TryReadWithFds(ref ReadOnlySequence<byte> buffer, MessageHeader header, out RemoteMessage? message)
    {
        message = null;
        if (header.PayloadLength < sizeof(uint))
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooShort, $"a call with file descriptors of {header.Length} bytes has no room for their count");
        }

        Span<byte> word = stackalloc byte[sizeof(uint)];
        buffer.Slice(RemoteWire.HeaderLength, sizeof(uint)).CopyTo(word);
        var count = BinaryPrimitives.ReadUInt32BigEndian(word);
        if (count > RemoteWire.MaxFdsPerMessage)
        {
            // libvirt's words (virNetMessageDecodeNumFDs).
            throw new RemoteProtocolException(RemoteProtocolErrorReason.TooManyFds, $"Received too many FDs {count}, expected {RemoteWire.MaxFdsPerMessage} maximum");
        }

        if (buffer.Length < header.Length + count)
        {
            return false;
        }

        var payload = buffer.Slice(RemoteWire.HeaderLength + sizeof(uint), header.PayloadLength - sizeof(uint)).ToArray();
        buffer = buffer.Slice(header.Length + count);
        message = new RemoteMessage(header, payload, (int)count);
        return true;
    }
}
