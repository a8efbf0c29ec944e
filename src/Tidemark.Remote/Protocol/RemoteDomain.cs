using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// <c>remote_nonnull_domain</c>: how a domain is named on the wire. The server looks a domain
/// up by <see cref="Uuid"/> (libvirt's daemon does, through <c>get_nonnull_domain</c>);
/// <see cref="Id"/> is -1 while the domain is not running.
/// </summary>
public sealed record RemoteDomain(string Name, Guid Uuid, int Id)
{
    /// <summary>The id of a domain that is not running.</summary>
    public const int InactiveId = -1;

    public static RemoteDomain Read(ref XdrReader reader)
    {
        var name = reader.ReadString(RemoteWire.MaxStringLength);
        var uuid = ReadUuid(ref reader);
        return new RemoteDomain(name, uuid, reader.ReadInt32());
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteString(Name, RemoteWire.MaxStringLength);
        WriteUuid(writer, Uuid);
        writer.WriteInt32(Id);
    }

    /// <summary>An optional <c>remote_domain</c> (<c>remote_nonnull_domain*</c>).</summary>
    public static RemoteDomain? ReadOptional(ref XdrReader reader) => reader.ReadOptionalFlag() ? Read(ref reader) : null;

    public static void WriteOptional(XdrWriter writer, RemoteDomain? domain)
    {
        writer.WriteOptionalFlag(domain is not null);
        domain?.Write(writer);
    }

    /// <summary><c>remote_uuid</c>: 16 raw bytes in RFC 4122 (big-endian) order, as libvirt prints them.</summary>
    public static Guid ReadUuid(ref XdrReader reader)
    {
        Span<byte> bytes = stackalloc byte[RemoteWire.UuidLength];
        reader.ReadFixedOpaque(bytes);
        return new Guid(bytes, bigEndian: true);
    }

    public static void WriteUuid(XdrWriter writer, Guid uuid)
    {
        Span<byte> bytes = stackalloc byte[RemoteWire.UuidLength];
        uuid.TryWriteBytes(bytes, bigEndian: true, out _);
        writer.WriteFixedOpaque(bytes);
    }

    /// <summary>Minimum wire size (empty name), for array-count checks.</summary>
    internal const int MinWireSize = 4 + RemoteWire.UuidLength + 4;
}
