using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Tidemark.Storage.Bitmaps;

/// <summary>
/// The serialized form of a <see cref="DirtyBitmap"/>: ceil(BitCount / 8) bytes, bit k in bit
/// k % 8 (least significant first) of byte k / 8 — the layout qcow2 stores in bitmap data
/// clusters (formats.md §2.4). Ranges are whole 64-bit words, which every qcow2 cluster is.
/// </summary>
public sealed partial class DirtyBitmap
{
    /// <summary>Bytes of the serialized form: ceil(BitCount / 8) (formats.md §2.3).</summary>
    public long DataLength => (BitCount + 7) >> 3;

    /// <summary>
    /// Writes the serialized bits from byte <paramref name="dataOffset"/> of the serialized form
    /// into <paramref name="destination"/>: bit k is bit k % 8 (least significant first) of
    /// byte k / 8, as qcow2 stores bitmap data (formats.md §2.4). Bytes past
    /// <see cref="DataLength"/> are zero.
    /// </summary>
    /// <exception cref="ArgumentException">The offset or the destination length is not a multiple of 8.</exception>
    public void CopyDataTo(long dataOffset, Span<byte> destination)
    {
        CheckDataRange(dataOffset, destination.Length);
        var firstWord = dataOffset >> 3;
        lock (_lock)
        {
            for (var i = 0; i < destination.Length >> 3; i++)
            {
                var index = firstWord + i;
                var word = index < _words.Length ? _words[index] : 0;
                BinaryPrimitives.WriteUInt64LittleEndian(destination.Slice(i << 3, 8), word);
            }
        }
    }

    /// <summary>
    /// Sets the bits that are set in <paramref name="source"/>, serialized bits starting at byte
    /// <paramref name="dataOffset"/> (the layout of <see cref="CopyDataTo"/>). Bits past
    /// <see cref="BitCount"/> are ignored: qcow2 requires them zero, and they cover no byte of
    /// the disk.
    /// </summary>
    public void OrData(long dataOffset, ReadOnlySpan<byte> source)
    {
        CheckDataRange(dataOffset, source.Length);
        var firstWord = dataOffset >> 3;
        lock (_lock)
        {
            // Words first, then the summaries over the span that changed in one refresh: a
            // loaded cluster of a dense bitmap changes thousands of adjacent words.
            var count = (int)Math.Clamp(_words.Length - firstWord, 0, source.Length >> 3);
            var values = MemoryMarshal.Cast<byte, ulong>(source[..(count << 3)]);
            var words = _words.AsSpan((int)Math.Min(firstWord, _words.Length), count);
            var lastWord = _words.Length - 1 - firstWord;
            if (count > 0 && !HasSetWord(firstWord, firstWord + count))
            {
                CopyIntoCleanWords(words, values, lastWord);
                RefreshSummaries(firstWord, firstWord + count);
                return;
            }

            long first = -1, last = -1;
            for (var i = 0; i < words.Length; i++)
            {
                var index = firstWord + i;
                if (OrWord(index, BitConverter.IsLittleEndian ? values[i] : BinaryPrimitives.ReverseEndianness(values[i])))
                {
                    first = first < 0 ? index : first;
                    last = index;
                }
            }

            if (first >= 0)
            {
                RefreshSummaries(first, last + 1);
            }
        }
    }

    // True when a word in [first, stop) has a set bit. Callers hold _lock.
    private bool HasSetWord(long first, long stop)
    {
        var next = _hasSet.FindNext(first);
        return next >= 0 && next < stop;
    }

    // OrData into words that are all zero (a bitmap being loaded, one cluster at a time): the
    // words are written without being read first. Reading a never-touched page of a fresh
    // array maps the shared zero page, and the write that follows faults again to replace it,
    // flushing the TLB of every CPU the process runs on; for a dense 1 TiB bitmap that was
    // 512 such double faults per load (perf: do_wp_page -> flush_tlb_mm_range, ~10 % of
    // 'image bitmap --merge'). Callers hold _lock.
    private void CopyIntoCleanWords(Span<ulong> words, ReadOnlySpan<ulong> values, long lastWord)
    {
        values.CopyTo(words);
        long dirty = 0;
        for (var i = 0; i < words.Length; i++)
        {
            if (!BitConverter.IsLittleEndian)
            {
                words[i] = BinaryPrimitives.ReverseEndianness(words[i]);
            }

            if (i == lastWord)
            {
                words[i] &= _lastWordMask;
            }

            dirty += BitOperations.PopCount(words[i]);
        }

        _dirtyBits += dirty;
    }

    /// <summary>Sets every bit serialized in bytes [dataOffset, dataOffset + length) (an all-ones qcow2 table entry, formats.md §2.3).</summary>
    public void SetData(long dataOffset, long length)
    {
        CheckDataRange(dataOffset, length);
        var first = dataOffset << 3;
        var stop = Math.Min(BitCount, (dataOffset + length) << 3);
        if (first >= stop)
        {
            return;
        }

        lock (_lock)
        {
            SetBits(first, stop);
        }
    }

    /// <summary>True when no bit serialized in bytes [dataOffset, dataOffset + length) is set.</summary>
    public bool IsDataClean(long dataOffset, long length)
    {
        CheckDataRange(dataOffset, length);
        var first = dataOffset << 3;
        if (first >= BitCount)
        {
            return true;
        }

        lock (_lock)
        {
            var found = FindNextSet(first);
            return found < 0 || found >= (dataOffset + length) << 3;
        }
    }

    private static void CheckDataRange(long dataOffset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if ((dataOffset & 7) != 0 || (length & 7) != 0)
        {
            throw new ArgumentException("serialized bitmap ranges are whole 64-bit words (offset and length multiples of 8)", nameof(dataOffset));
        }
    }
}
