using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary><c>remote_nonnull_domain_checkpoint</c>: a checkpoint's name and its domain.</summary>
public sealed record RemoteCheckpoint(string Name, RemoteDomain Domain)
{
    public static RemoteCheckpoint Read(ref XdrReader reader)
    {
        var name = reader.ReadString(RemoteWire.MaxStringLength);
        return new RemoteCheckpoint(name, RemoteDomain.Read(ref reader));
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteString(Name, RemoteWire.MaxStringLength);
        Domain.Write(writer);
    }

    internal const int MinWireSize = 4 + RemoteDomain.MinWireSize;
}
