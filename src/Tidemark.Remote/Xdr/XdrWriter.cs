using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Remote.Xdr;

/// <summary>
/// Writes XDR (RFC 4506) into a buffer writer: big-endian, every item padded to 4 bytes with
/// zeros. Lengths are checked against the definition's maximum so this side never sends what
/// the other side must refuse.
/// </summary>
public readonly ref struct XdrWriter
{
    private readonly IBufferWriter<byte> _output;

    public XdrWriter(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
    }

    public void WriteInt32(int value) => BinaryPrimitives.WriteInt32BigEndian(Reserve(4), value);

    public void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32BigEndian(Reserve(4), value);

    public void WriteInt64(long value) => BinaryPrimitives.WriteInt64BigEndian(Reserve(8), value);

    public void WriteUInt64(ulong value) => BinaryPrimitives.WriteUInt64BigEndian(Reserve(8), value);

    public void WriteDouble(double value) => BinaryPrimitives.WriteDoubleBigEndian(Reserve(8), value);

    public void WriteBool(bool value) => WriteUInt32(value ? 1u : 0u);

    /// <summary>The "present" word of an optional <c>T*</c>; the caller writes T after a true.</summary>
    public void WriteOptionalFlag(bool present) => WriteUInt32(present ? 1u : 0u);

    /// <summary>A <c>string&lt;max&gt;</c>.</summary>
    /// <exception cref="ArgumentException">The UTF-8 form is longer than <paramref name="maxLength"/>.</exception>
    public void WriteString(string value, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(value);
        var length = Encoding.UTF8.GetByteCount(value);
        CheckLength(length, maxLength, "string");
        WriteUInt32((uint)length);
        var span = Reserve(XdrReader.Padded(length));
        var written = Encoding.UTF8.GetBytes(value, span);
        span[written..].Clear();
    }

    /// <summary>An optional <c>string*</c>.</summary>
    public void WriteOptionalString(string? value, int maxLength)
    {
        WriteOptionalFlag(value is not null);
        if (value is not null)
        {
            WriteString(value, maxLength);
        }
    }

    /// <summary>An <c>opaque&lt;max&gt;</c>.</summary>
    public void WriteOpaque(ReadOnlySpan<byte> value, int maxLength)
    {
        CheckLength(value.Length, maxLength, "opaque");
        WriteUInt32((uint)value.Length);
        WriteFixedOpaque(value);
    }

    /// <summary>A fixed <c>opaque[n]</c>: the bytes and zero padding, no length word.</summary>
    public void WriteFixedOpaque(ReadOnlySpan<byte> value)
    {
        var span = Reserve(XdrReader.Padded(value.Length));
        value.CopyTo(span);
        span[value.Length..].Clear();
    }

    /// <summary>The count of an array <c>T&lt;max&gt;</c>; the caller writes the elements.</summary>
    public void WriteArrayCount(int count, int maxCount, string what)
    {
        CheckLength(count, maxCount, what);
        WriteUInt32((uint)count);
    }

    private static void CheckLength(int length, int maxLength, string what)
    {
        if (length > maxLength)
        {
            throw new ArgumentException($"{what} of length {length} is over the protocol maximum {maxLength}");
        }
    }

    private Span<byte> Reserve(int count)
    {
        var span = _output.GetSpan(count)[..count];
        _output.Advance(count);
        return span;
    }
}
