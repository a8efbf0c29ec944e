using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary><c>remote_nonnull_storage_pool</c>.</summary>
public sealed record RemoteStoragePool(string Name, Guid Uuid)
{
    public static RemoteStoragePool Read(ref XdrReader reader)
    {
        var name = reader.ReadString(RemoteWire.MaxStringLength);
        return new RemoteStoragePool(name, RemoteDomain.ReadUuid(ref reader));
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteString(Name, RemoteWire.MaxStringLength);
        RemoteDomain.WriteUuid(writer, Uuid);
    }
}
