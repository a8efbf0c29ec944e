using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// One refcount block: a cluster of <c>refcount_bits</c>-wide entries (formats.md §1.4). Widths
/// below 8 bits are packed from the least significant bit of each byte; 8 bits and above are
/// big-endian integers.
/// </summary>
internal sealed class RefcountBlock
{
    private readonly int _order;

    public RefcountBlock(long hostOffset, byte[] data, int refcountOrder)
    {
        HostOffset = hostOffset;
        Data = data;
        _order = refcountOrder;
    }

    /// <summary>Where this block lives in the host file.</summary>
    public long HostOffset { get; }

    public byte[] Data { get; }

    /// <summary>Changed since it was last written.</summary>
    public bool Dirty { get; set; }

    /// <summary>Largest value an entry can hold.</summary>
    public ulong MaxRefcount => _order == 6 ? ulong.MaxValue : (1UL << (1 << _order)) - 1;

    public ulong this[int index]
    {
        get
        {
            var bits = 1 << _order;
            return bits switch
            {
                64 => BinaryPrimitives.ReadUInt64BigEndian(Data.AsSpan(index * 8)),
                32 => BinaryPrimitives.ReadUInt32BigEndian(Data.AsSpan(index * 4)),
                16 => BinaryPrimitives.ReadUInt16BigEndian(Data.AsSpan(index * 2)),
                8 => Data[index],
                _ => (ulong)((Data[(index * bits) >> 3] >> ((index * bits) & 7)) & ((1 << bits) - 1)),
            };
        }

        set
        {
            var bits = 1 << _order;
            switch (bits)
            {
                case 64:
                    BinaryPrimitives.WriteUInt64BigEndian(Data.AsSpan(index * 8), value);
                    break;
                case 32:
                    BinaryPrimitives.WriteUInt32BigEndian(Data.AsSpan(index * 4), (uint)value);
                    break;
                case 16:
                    BinaryPrimitives.WriteUInt16BigEndian(Data.AsSpan(index * 2), (ushort)value);
                    break;
                case 8:
                    Data[index] = (byte)value;
                    break;
                default:
                    var shift = (index * bits) & 7;
                    var mask = ((1 << bits) - 1) << shift;
                    ref var b = ref Data[(index * bits) >> 3];
                    b = (byte)((b & ~mask) | (((int)value << shift) & mask));
                    break;
            }

            Dirty = true;
        }
    }
}
