using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// <c>remote_error</c>, the payload of a reply with status ERROR. <c>net</c> (the last field)
/// is always sent absent: Tidemark has no networks.
/// </summary>
public sealed record RemoteErrorRecord(int Code, int Domain, string? Message, int Level, RemoteDomain? Dom, string? Str1, string? Str2, string? Str3, int Int1, int Int2)
{
    /// <summary>VIR_ERR_ERROR: every error Tidemark sends has this level.</summary>
    public const int LevelError = 2;

    public static RemoteErrorRecord From(LibvirtError error)
    {
        ArgumentNullException.ThrowIfNull(error);
        return new RemoteErrorRecord((int)error.Code, (int)error.Domain, error.Message, LevelError, error.ErrorDomainObject, null, null, null, 0, 0);
    }

    public LibvirtError ToError() =>
        new((VirErrorNumber)Code, (VirErrorDomain)Domain, Message ?? "unknown error") { ErrorDomainObject = Dom };

    public static RemoteErrorRecord Read(ref XdrReader reader)
    {
        var code = reader.ReadInt32();
        var domain = reader.ReadInt32();
        var message = reader.ReadOptionalString(RemoteWire.MaxStringLength);
        var level = reader.ReadInt32();
        var dom = RemoteDomain.ReadOptional(ref reader);
        var str1 = reader.ReadOptionalString(RemoteWire.MaxStringLength);
        var str2 = reader.ReadOptionalString(RemoteWire.MaxStringLength);
        var str3 = reader.ReadOptionalString(RemoteWire.MaxStringLength);
        var int1 = reader.ReadInt32();
        var int2 = reader.ReadInt32();
        if (reader.ReadOptionalFlag())
        {
            // remote_nonnull_network { name; uuid }: read past it, nothing here uses networks.
            reader.ReadString(RemoteWire.MaxStringLength);
            RemoteDomain.ReadUuid(ref reader);
        }

        return new RemoteErrorRecord(code, domain, message, level, dom, str1, str2, str3, int1, int2);
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteInt32(Code);
        writer.WriteInt32(Domain);
        writer.WriteOptionalString(Message, RemoteWire.MaxStringLength);
        writer.WriteInt32(Level);
        RemoteDomain.WriteOptional(writer, Dom);
        writer.WriteOptionalString(Str1, RemoteWire.MaxStringLength);
        writer.WriteOptionalString(Str2, RemoteWire.MaxStringLength);
        writer.WriteOptionalString(Str3, RemoteWire.MaxStringLength);
        writer.WriteInt32(Int1);
        writer.WriteInt32(Int2);
        writer.WriteOptionalFlag(false);
    }
}
