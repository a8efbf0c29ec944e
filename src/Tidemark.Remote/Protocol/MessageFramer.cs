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

        var payload = buffer.Slice(RemoteWire.HeaderLength, parsed.PayloadLength).ToArray();
        buffer = buffer.Slice(length);
        message = new RemoteMessage(parsed, payload);
        return true;
    }
}
