using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Remote.Xdr;

/// <summary>
/// Reads XDR (RFC 4506) from a span: big-endian, every item padded to 4 bytes. Every length and
/// count is checked against the stated maximum and against the bytes left <em>before</em>
/// anything is allocated; any malformation throws <see cref="RemoteProtocolException"/>.
/// </summary>
public ref struct XdrReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public XdrReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    /// <summary>Bytes consumed so far.</summary>
    public readonly int Position => _position;

    /// <summary>Bytes not yet consumed.</summary>
    public readonly int Remaining => _data.Length - _position;

    public int ReadInt32() => BinaryPrimitives.ReadInt32BigEndian(Take(4, "int"));

    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4, "unsigned int"));

    public long ReadInt64() => BinaryPrimitives.ReadInt64BigEndian(Take(8, "hyper"));

    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64BigEndian(Take(8, "unsigned hyper"));

    public double ReadDouble() => BinaryPrimitives.ReadDoubleBigEndian(Take(8, "double"));

    /// <summary>An XDR bool: exactly 0 or 1.</summary>
    public bool ReadBool() => ReadDiscriminant("bool");

    /// <summary>The "present" word of an optional <c>T*</c>: exactly 0 (absent) or 1 (present).</summary>
    public bool ReadOptionalFlag() => ReadDiscriminant("optional data");

    /// <summary>A <c>string&lt;max&gt;</c>: length, UTF-8 bytes, padding.</summary>
    public string ReadString(int maxLength)
    {
        var bytes = ReadVariable(maxLength, "string");
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.InvalidString, $"string at offset {_position - Padded(bytes.Length)} is not valid UTF-8", e);
        }
    }

    /// <summary>An optional <c>string*</c>.</summary>
    public string? ReadOptionalString(int maxLength) => ReadOptionalFlag() ? ReadString(maxLength) : null;

    /// <summary>An <c>opaque&lt;max&gt;</c>: length, bytes, padding.</summary>
    public byte[] ReadOpaque(int maxLength) => ReadVariable(maxLength, "opaque").ToArray();

    /// <summary>A fixed <c>opaque[n]</c> (n = destination length): the bytes and padding, no length word.</summary>
    public void ReadFixedOpaque(scoped Span<byte> destination)
    {
        Take(destination.Length, "fixed opaque").CopyTo(destination);
        SkipPadding(destination.Length);
    }

    /// <summary>
    /// The count of an array <c>T&lt;max&gt;</c>. Refused when over <paramref name="maxCount"/>,
    /// or when even <paramref name="minElementSize"/> bytes per element cannot fit in what is
    /// left, so a lying count never sizes an allocation.
    /// </summary>
    public int ReadArrayCount(int maxCount, int minElementSize, string what)
    {
        var count = ReadUInt32();
        if (count > (uint)maxCount)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.LengthOverMaximum, $"{what}: {count} elements, the maximum is {maxCount}");
        }

        if ((ulong)count * (ulong)Math.Max(minElementSize, 1) > (ulong)Remaining)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.Truncated, $"{what}: {count} elements cannot fit in the {Remaining} bytes left");
        }

        return (int)count;
    }

    /// <summary>Refuses bytes left after the last field: a payload is exactly its fields.</summary>
    public readonly void EnsureEnd(string what)
    {
        if (Remaining != 0)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.TrailingBytes, $"{what}: {Remaining} unexpected bytes after the last field");
        }
    }

    private bool ReadDiscriminant(string what)
    {
        var value = ReadUInt32();
        return value switch
        {
            0 => false,
            1 => true,
            _ => throw new RemoteProtocolException(RemoteProtocolErrorReason.InvalidDiscriminant, $"{what} at offset {_position - 4} is {value}, not 0 or 1"),
        };
    }

    private ReadOnlySpan<byte> ReadVariable(int maxLength, string what)
    {
        var length = ReadUInt32();
        if (length > (uint)maxLength)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.LengthOverMaximum, $"{what} of {length} bytes at offset {_position - 4}, the maximum is {maxLength}");
        }

        var bytes = Take((int)length, what);
        SkipPadding((int)length);
        return bytes;
    }

    private void SkipPadding(int length) => Take(Padded(length) - length, "padding");

    private ReadOnlySpan<byte> Take(int count, string what)
    {
        if (count > Remaining)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.Truncated, $"not enough bytes for {what} at offset {_position}: {count} needed, {Remaining} left");
        }

        var slice = _data.Slice(_position, count);
        _position += count;
        return slice;
    }

    internal static int Padded(int length) => (length + 3) & ~3;
}

/// <summary>Decodes one XDR item (or a tuple of them) from a reader.</summary>
public delegate T XdrDecoder<T>(ref XdrReader reader);
