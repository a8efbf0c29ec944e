using System.Globalization;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>The union discriminant of <c>remote_typed_param_value</c> (virTypedParameterType).</summary>
public enum TypedParameterType
{
    Int = 1,
    UInt = 2,
    LLong = 3,
    ULLong = 4,
    Double = 5,
    Boolean = 6,
    String = 7,
}

/// <summary>
/// <c>remote_typed_param</c>: a named value of one of seven types (job statistics, guest info,
/// the JOB_COMPLETED event). Integers of every width are held in <see cref="Bits"/> (unsigned
/// ones reinterpreted), so the type decides how they read back.
/// </summary>
public sealed record TypedParameter(string Field, TypedParameterType Type, long Bits, double Real, string? Text)
{
    /// <summary>VIR_TYPED_PARAM_FIELD_LENGTH: field names are at most 80 bytes with the NUL.</summary>
    public const int MaxFieldLength = 80;

    public static TypedParameter Int(string field, int value) => new(field, TypedParameterType.Int, value, 0, null);

    public static TypedParameter UInt(string field, uint value) => new(field, TypedParameterType.UInt, value, 0, null);

    public static TypedParameter LLong(string field, long value) => new(field, TypedParameterType.LLong, value, 0, null);

    public static TypedParameter ULLong(string field, ulong value) => new(field, TypedParameterType.ULLong, unchecked((long)value), 0, null);

    public static TypedParameter Double(string field, double value) => new(field, TypedParameterType.Double, 0, value, null);

    public static TypedParameter Boolean(string field, bool value) => new(field, TypedParameterType.Boolean, value ? 1 : 0, 0, null);

    public static TypedParameter String(string field, string value) => new(field, TypedParameterType.String, 0, 0, value);

    /// <summary>The value as an unsigned 64-bit number (integer types and booleans).</summary>
    public ulong AsUInt64() => unchecked((ulong)Bits);

    /// <summary>The value as virsh would print it (integers in decimal, booleans as yes/no).</summary>
    public string FormatValue() => Type switch
    {
        TypedParameterType.ULLong => AsUInt64().ToString(CultureInfo.InvariantCulture),
        TypedParameterType.Double => Real.ToString("R", CultureInfo.InvariantCulture),
        TypedParameterType.Boolean => Bits != 0 ? "yes" : "no",
        TypedParameterType.String => Text ?? "",
        _ => Bits.ToString(CultureInfo.InvariantCulture),
    };

    public static TypedParameter Read(ref XdrReader reader)
    {
        var field = reader.ReadString(RemoteWire.MaxStringLength);
        var type = reader.ReadInt32();
        return (TypedParameterType)type switch
        {
            TypedParameterType.Int => Int(field, reader.ReadInt32()),
            TypedParameterType.UInt => UInt(field, reader.ReadUInt32()),
            TypedParameterType.LLong => LLong(field, reader.ReadInt64()),
            TypedParameterType.ULLong => ULLong(field, reader.ReadUInt64()),
            TypedParameterType.Double => Double(field, reader.ReadDouble()),
            TypedParameterType.Boolean => new TypedParameter(field, TypedParameterType.Boolean, reader.ReadInt32(), 0, null),
            TypedParameterType.String => String(field, reader.ReadString(RemoteWire.MaxStringLength)),
            _ => throw new RemoteProtocolException(RemoteProtocolErrorReason.UnknownUnionArm, $"typed parameter '{field}' has unknown type {type}"),
        };
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteString(Field, RemoteWire.MaxStringLength);
        writer.WriteInt32((int)Type);
        switch (Type)
        {
            case TypedParameterType.Int:
            case TypedParameterType.Boolean:
                writer.WriteInt32((int)Bits);
                break;
            case TypedParameterType.UInt:
                writer.WriteUInt32((uint)Bits);
                break;
            case TypedParameterType.LLong:
                writer.WriteInt64(Bits);
                break;
            case TypedParameterType.ULLong:
                writer.WriteUInt64(AsUInt64());
                break;
            case TypedParameterType.Double:
                writer.WriteDouble(Real);
                break;
            case TypedParameterType.String:
                writer.WriteString(Text ?? "", RemoteWire.MaxStringLength);
                break;
            default:
                throw new InvalidOperationException($"typed parameter '{Field}' has unknown type {(int)Type}");
        }
    }

    /// <summary>A <c>remote_typed_param&lt;max&gt;</c> array.</summary>
    public static IReadOnlyList<TypedParameter> ReadList(ref XdrReader reader, int maxCount, string what)
    {
        var count = reader.ReadArrayCount(maxCount, MinWireSize, what);
        var list = new TypedParameter[count];
        for (var i = 0; i < count; i++)
        {
            list[i] = Read(ref reader);
        }

        return list;
    }

    public static void WriteList(XdrWriter writer, IReadOnlyList<TypedParameter> list, int maxCount, string what)
    {
        writer.WriteArrayCount(list.Count, maxCount, what);
        foreach (var p in list)
        {
            p.Write(writer);
        }
    }

    /// <summary>Empty field, type word, a 4-byte value.</summary>
    internal const int MinWireSize = 12;
}
