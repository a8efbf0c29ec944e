using System.Buffers.Binary;

namespace Tidemark.Nbd.Protocol;

/// <summary>One compact transmission request header (formats.md §4.4), as read off the wire.</summary>
public readonly record struct NbdRequest(NbdCommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, uint Length)
{
    // Field offsets of the 28-byte compact request, each after the previous field's length.
    internal const int MagicOffset = 0;
    internal const int FlagsOffset = MagicOffset + sizeof(uint);
    internal const int TypeOffset = FlagsOffset + sizeof(ushort);
    internal const int CookieOffset = TypeOffset + sizeof(ushort);
    internal const int OffsetOffset = CookieOffset + sizeof(ulong);
    internal const int LengthOffset = OffsetOffset + sizeof(ulong);

    /// <summary>
    /// Decodes a request header. Returns false (and the magic that was found) when the magic is
    /// not NBD_REQUEST_MAGIC: the stream has lost its framing and nothing after it can be trusted.
    /// Any command and flag value decodes; validation against the export comes next.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="header"/> is shorter than <see cref="NbdWire.RequestLength"/>.</exception>
    public static bool TryDecode(ReadOnlySpan<byte> header, out NbdRequest request, out uint magic)
    {
        if (header.Length < NbdWire.RequestLength)
        {
            throw new ArgumentException($"a request header is {NbdWire.RequestLength} bytes, got {header.Length}", nameof(header));
        }

        magic = BinaryPrimitives.ReadUInt32BigEndian(header[MagicOffset..]);
        if (magic != NbdMagic.Request)
        {
            request = default;
            return false;
        }

        request = new NbdRequest(
            (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(header[FlagsOffset..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(header[TypeOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[CookieOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[OffsetOffset..]),
            BinaryPrimitives.ReadUInt32BigEndian(header[LengthOffset..]));
        return true;
    }

    /// <summary>Encodes this request into the first 28 bytes of <paramref name="destination"/>.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination[MagicOffset..], NbdMagic.Request);
        BinaryPrimitives.WriteUInt16BigEndian(destination[FlagsOffset..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TypeOffset..], (ushort)Command);
        BinaryPrimitives.WriteUInt64BigEndian(destination[CookieOffset..], Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[OffsetOffset..], Offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[LengthOffset..], Length);
    }

    /// <summary>The payload bytes that follow this header on the wire (only WRITE carries one).</summary>
    public uint PayloadLength => Command == NbdCommand.Write ? Length : 0;
}
