namespace Tidemark.Remote.Protocol;

/// <summary>
/// One received message: its header and its payload (the XDR after the header, and after the
/// descriptor count of a CALL_WITH_FDS), owned by the receiver.
/// </summary>
/// <param name="FdCount">How many file descriptors came after the message (CALL_WITH_FDS); 0 otherwise.</param>
public sealed record RemoteMessage(MessageHeader Header, ReadOnlyMemory<byte> Payload, int FdCount = 0);
