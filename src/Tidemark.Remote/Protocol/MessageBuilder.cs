using System.Buffers;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// Builds one outgoing message: the header's place is reserved, the payload is written as XDR
/// through <see cref="Payload"/>, and <see cref="Finish"/> fills in the length.
/// </summary>
public sealed class MessageBuilder
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);
    private readonly MessageHeader _header;

    /// <param name="version">The program's version: 1, except in the answer to a call of another (which repeats it).</param>
    public MessageBuilder(uint program, uint procedure, RemoteMessageType type, uint serial, RemoteMessageStatus status, uint version = RemoteWire.ProgramVersion)
    {
        _header = new MessageHeader(0, program, version, procedure, type, serial, status);
        _buffer.Advance(RemoteWire.HeaderLength);
    }

    /// <summary>A REMOTE-program message.</summary>
    public static MessageBuilder Remote(RemoteProcedure procedure, RemoteMessageType type, uint serial, RemoteMessageStatus status = RemoteMessageStatus.Ok) =>
        new(RemoteWire.RemoteProgram, (uint)procedure, type, serial, status);

    /// <summary>Where the payload goes.</summary>
    public XdrWriter Payload => new(_buffer);

    public MessageHeader Header => _header;

    /// <summary>The whole message with its length word set.</summary>
    /// <exception cref="RemoteProtocolException">The message is over <paramref name="maxLength"/>.</exception>
    public ReadOnlyMemory<byte> Finish(int maxLength = RemoteWire.MaxMessageLength)
    {
        if (_buffer.WrittenCount > maxLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.MessageTooLarge, $"message of {_buffer.WrittenCount} bytes is over the maximum {maxLength}");
        }

        var memory = _buffer.WrittenMemory;
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsMemory(memory);
        (_header with { Length = (uint)_buffer.WrittenCount }).Write(bytes.Span);
        return memory;
    }
}
