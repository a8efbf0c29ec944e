using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// One cached L2 table: <c>l2_entries</c> u64 entries, or (entry, subcluster bitmap) pairs
/// with extended L2 (formats.md §1.5.2, §1.5.4).
/// </summary>
internal sealed class L2Table
{
    private readonly ulong[] _words;
    private readonly bool _extended;

    public L2Table(long hostOffset, ulong[] words, bool extended)
    {
        HostOffset = hostOffset;
        _words = words;
        _extended = extended;
    }

    public long HostOffset { get; }

    /// <summary>Changed in memory and not yet written.</summary>
    public bool Dirty { get; set; }

    public int Count => _extended ? _words.Length / 2 : _words.Length;

    public ulong Entry(int index) => _extended ? _words[index * 2] : _words[index];

    public ulong Bitmap(int index) => _extended ? _words[(index * 2) + 1] : 0;

    public void Set(int index, ulong entry)
    {
        if (_extended)
        {
            _words[index * 2] = entry;
        }
        else
        {
            _words[index] = entry;
        }

        Dirty = true;
    }

    public static L2Table Parse(long hostOffset, ReadOnlySpan<byte> cluster, bool extended)
    {
        // Big-endian entries (qcow2.txt, "Cluster mapping"): one vectorised swap of the whole table.
        var words = new ulong[cluster.Length / 8];
        var stored = MemoryMarshal.Cast<byte, ulong>(cluster);
        if (BitConverter.IsLittleEndian)
        {
            BinaryPrimitives.ReverseEndianness(stored, words);
        }
        else
        {
            stored.CopyTo(words);
        }

        return new L2Table(hostOffset, words, extended);
    }

    public L2Table CopyTo(long hostOffset) => new(hostOffset, (ulong[])_words.Clone(), _extended) { Dirty = true };

    public byte[] Serialize()
    {
        var bytes = new byte[_words.Length * 8];
        for (var i = 0; i < _words.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), _words[i]);
        }

        return bytes;
    }
}
