namespace Tidemark.Remote.Protocol;

/// <summary>One received message: its header and its payload (the XDR after the header), owned by the receiver.</summary>
public sealed record RemoteMessage(MessageHeader Header, ReadOnlyMemory<byte> Payload);
