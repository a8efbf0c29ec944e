using System.Buffers.Binary;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// <c>virNetMessageHeader</c> with the length word before it (libvirt-rpc.md §1): seven
/// big-endian 4-byte words. <see cref="Length"/> counts the whole message, itself included.
/// </summary>
public readonly record struct MessageHeader(uint Length, uint Program, uint Version, uint Procedure, RemoteMessageType Type, uint Serial, RemoteMessageStatus Status)
{
    /// <summary>Parses the 28 header bytes without judging them (see <see cref="Validate"/>).</summary>
    public static MessageHeader Read(ReadOnlySpan<byte> header)
    {
        if (header.Length < RemoteWire.HeaderLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.Truncated, $"message header needs {RemoteWire.HeaderLength} bytes, got {header.Length}");
        }

        return new MessageHeader(
            BinaryPrimitives.ReadUInt32BigEndian(header),
            BinaryPrimitives.ReadUInt32BigEndian(header[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(header[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(header[12..]),
            (RemoteMessageType)BinaryPrimitives.ReadUInt32BigEndian(header[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(header[20..]),
            (RemoteMessageStatus)BinaryPrimitives.ReadUInt32BigEndian(header[24..]));
    }

    public void Write(Span<byte> header)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, Length);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], Program);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], Procedure);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)Type);
        BinaryPrimitives.WriteUInt32BigEndian(header[20..], Serial);
        BinaryPrimitives.WriteUInt32BigEndian(header[24..], (uint)Status);
    }

    /// <summary>Payload bytes after the header.</summary>
    public int PayloadLength => (int)Length - RemoteWire.HeaderLength;

    /// <summary>
    /// Refuses a header whose length is outside [header, <paramref name="maxLength"/>]: the
    /// stream can no longer be cut into messages. The program, version, type and status are
    /// judged by the side reading them (a server answers a call to a program it does not serve
    /// and reads on, as libvirtd's virNetServerProgramUnknownError does).
    /// </summary>
    public void Validate(int maxLength)
    {
        if (Length > (uint)maxLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooLarge, $"packet {Length} bytes received from client too large, the maximum is {maxLength}");
        }

        if (Length < RemoteWire.HeaderLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooShort, $"packet length {Length} is shorter than the {RemoteWire.HeaderLength}-byte header");
        }

    }
}
