using System.Buffers.Binary;
using System.Numerics;

namespace Tidemark.Storage.Bitmaps;

/// <summary>
/// One bit per <see cref="Granularity"/> bytes of a disk of <see cref="Size"/> bytes saying
/// "written since": bit k covers bytes [k·g, (k+1)·g), the last one clipped to the disk size
/// (formats.md §2.4, §3.1).
/// </summary>
/// <remarks>
/// <para>Layout: the bits themselves are packed in 64-bit words (bit k is bit k % 64 of word
/// k / 64), which is the physical minimum: 2 MiB for a 1 TiB disk at 64 KiB. Two
/// <see cref="BitSummary"/> trees over those words — "word has a set bit" and "word has a clear
/// bit" — cost ~3 % more and let the search for the next dirty or the next clean bit skip
/// untouched regions in a few word reads, so walking a mostly clean (or mostly dirty) 1 TiB
/// bitmap costs microseconds.</para>
/// <para>Thread safety: every member may be called from any thread. One lock per bitmap guards
/// the words, the summaries and the count; it is held for in-memory work only, never across
/// I/O. Iterators take it once per extent, so a concurrent writer may be seen part-way: an
/// extent reflects the bitmap at the instant it was produced.</para>
/// </remarks>
public sealed class DirtyBitmap
{
    /// <summary>QEMU's default granularity (formats.md §3.2).</summary>
    public const long DefaultGranularity = 64 * 1024;

    /// <summary>Smallest granularity: 512 B (QEMU: granularity_bits ≥ 9, formats.md §2.5).</summary>
    public const int MinGranularityBits = 9;

    /// <summary>Largest granularity: 2 GiB (QEMU: granularity_bits ≤ 31, formats.md §2.5).</summary>
    public const int MaxGranularityBits = 31;

    /// <summary>
    /// At most 2^32 bits (512 MiB of words), the same bound QEMU puts on persistent bitmap data
    /// (formats.md §2.3): a bigger disk needs a coarser granularity.
    /// </summary>
    public const long MaxBitCount = 1L << 32;

    private readonly ulong[] _words;
    private readonly BitSummary _hasSet;
    private readonly BitSummary _hasClear;
    private readonly ulong _lastWordMask;
    private readonly Lock _lock = new();
    private long _dirtyBits;

    /// <summary>Creates an empty (all clean) bitmap.</summary>
    /// <param name="size">Bytes covered (the disk's virtual size); at least 1.</param>
    /// <param name="granularity">Bytes per bit: a power of two from 512 B to 2 GiB.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size or granularity outside those bounds, or more than <see cref="MaxBitCount"/> bits.</exception>
    public DirtyBitmap(long size, long granularity = DefaultGranularity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (!IsValidGranularity(granularity))
        {
            throw new ArgumentOutOfRangeException(nameof(granularity), granularity, "granularity must be a power of two from 512 B to 2 GiB");
        }

        Size = size;
        Granularity = granularity;
        GranularityBits = BitOperations.TrailingZeroCount(granularity);
        BitCount = ((size - 1) >> GranularityBits) + 1;
        if (BitCount > MaxBitCount)
        {
            throw new ArgumentOutOfRangeException(nameof(granularity), granularity, $"a {size}-byte disk needs more than 2^32 bits at this granularity; use a coarser one");
        }

        var wordCount = (BitCount + 63) >> 6;
        _words = new ulong[wordCount];
        var tail = (int)(BitCount & 63);
        _lastWordMask = tail == 0 ? ulong.MaxValue : (1UL << tail) - 1;
        _hasSet = new BitSummary(wordCount, allFlagged: false);
        _hasClear = new BitSummary(wordCount, allFlagged: true);
    }

    /// <summary>Bytes covered.</summary>
    public long Size { get; }

    /// <summary>Bytes per bit.</summary>
    public long Granularity { get; }

    /// <summary>log2 of <see cref="Granularity"/>.</summary>
    public int GranularityBits { get; }

    /// <summary>Number of bits: ceil(Size / Granularity).</summary>
    public long BitCount { get; }

    /// <summary>Bytes of the serialized form: ceil(BitCount / 8) (formats.md §2.3).</summary>
    public long DataLength => (BitCount + 7) >> 3;

    /// <summary>Bytes of memory held by the bits and their summaries.</summary>
    public long MemoryBytes => ((long)_words.Length * sizeof(ulong)) + _hasSet.MemoryBytes + _hasClear.MemoryBytes;

    /// <summary>Number of dirty bits.</summary>
    public long DirtyBitCount
    {
        get
        {
            lock (_lock)
            {
                return _dirtyBits;
            }
        }
    }

    /// <summary>True when <paramref name="granularity"/> is a power of two from 512 B to 2 GiB.</summary>
    public static bool IsValidGranularity(long granularity) =>
        granularity >= 1L << MinGranularityBits && granularity <= 1L << MaxGranularityBits && BitOperations.IsPow2(granularity);

    /// <summary>Dirty bytes: every dirty bit counts its granularity, the last one clipped to <see cref="Size"/>.</summary>
    public long CountDirtyBytes()
    {
        lock (_lock)
        {
            var bytes = _dirtyBits << GranularityBits;
            if (TestBit(BitCount - 1))
            {
                bytes -= (BitCount << GranularityBits) - Size;
            }

            return bytes;
        }
    }

    /// <summary>True when the bit covering byte <paramref name="offset"/> is set.</summary>
    public bool IsDirty(long offset)
    {
        CheckOffset(offset);
        lock (_lock)
        {
            return TestBit(offset >> GranularityBits);
        }
    }

    /// <summary>
    /// Marks every bit that covers any byte of [offset, offset + length) dirty. The range is
    /// clipped to <see cref="Size"/>; an empty range does nothing.
    /// </summary>
    public void SetRange(long offset, long length)
    {
        if (!Clip(offset, length, out var end))
        {
            return;
        }

        var first = offset >> GranularityBits;
        var last = (end - 1) >> GranularityBits;
        lock (_lock)
        {
            SetBits(first, last + 1);
        }
    }

    /// <summary>
    /// Marks clean every bit whose bytes lie wholly inside [offset, offset + length); the last
    /// bit counts as wholly inside when the range reaches <see cref="Size"/>. Bits only partly
    /// covered stay as they are, so clearing never loses a write outside the range.
    /// </summary>
    public void ClearRange(long offset, long length)
    {
        if (!Clip(offset, length, out var end))
        {
            return;
        }

        var first = (offset + Granularity - 1) >> GranularityBits;
        var stop = end == Size ? BitCount : end >> GranularityBits;
        if (first >= stop)
        {
            return;
        }

        lock (_lock)
        {
            ClearBits(first, stop);
        }
    }

    /// <summary>Marks every bit clean.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            Array.Clear(_words);
            _hasSet.Reset();
            _hasClear.Fill();
            _dirtyBits = 0;
        }
    }

    /// <summary>
    /// Sets every bit that is set in <paramref name="source"/> (this |= source; the source is
    /// unchanged). With different granularities a source bit dirties every bit of this bitmap
    /// that overlaps its bytes, so nothing dirty in the source is clean here afterwards
    /// (QEMU 7.2 merges across granularities the same way, formats.md §3.2).
    /// </summary>
    /// <exception cref="ArgumentException">The bitmaps cover different sizes.</exception>
    public void Merge(DirtyBitmap source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Size != Size)
        {
            throw new ArgumentException($"bitmaps of different sizes cannot be merged ({source.Size} into {Size} bytes)", nameof(source));
        }

        if (ReferenceEquals(source, this))
        {
            return;
        }

        if (source.Granularity != Granularity)
        {
            foreach (var extent in source.EnumerateDirtyExtents(0, source.Size))
            {
                SetRange(extent.Offset, extent.Length);
            }

            return;
        }

        // Same granularity: OR the non-zero words in batches. Only one lock is held at a time,
        // so two merges in opposite directions cannot deadlock.
        const int Batch = 4096;
        Span<long> indexes = stackalloc long[Batch];
        Span<ulong> values = stackalloc ulong[Batch];
        long next = 0;
        while (next >= 0)
        {
            var count = 0;
            lock (source._lock)
            {
                while (count < Batch && (next = source._hasSet.FindNext(next)) >= 0)
                {
                    indexes[count] = next;
                    values[count] = source._words[next];
                    count++;
                    next++;
                }
            }

            lock (_lock)
            {
                for (var i = 0; i < count; i++)
                {
                    var index = indexes[i];
                    UpdateWord(index, _words[index] | values[i]);
                }
            }
        }
    }

    /// <summary>
    /// The run of equally dirty (or equally clean) bytes that starts at <paramref name="offset"/>,
    /// at most <paramref name="maxLength"/> bytes long and never past <see cref="Size"/>.
    /// </summary>
    public BitmapExtent GetExtent(long offset, long maxLength)
    {
        CheckOffset(offset);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        var bit = offset >> GranularityBits;
        bool dirty;
        long stopBit;
        lock (_lock)
        {
            dirty = TestBit(bit);
            stopBit = dirty ? FindNextClear(bit) : FindNextSet(bit);
        }

        var limit = Math.Min(Size, offset + Math.Min(maxLength, Size - offset));
        var end = stopBit < 0 ? limit : Math.Min(limit, stopBit << GranularityBits);
        return new BitmapExtent(offset, end - offset, dirty);
    }

    /// <summary>
    /// The first dirty byte at or after <paramref name="offset"/>: <paramref name="offset"/>
    /// itself when its bit is set, else the start of the next dirty bit; -1 when there is none.
    /// </summary>
    public long FindNextDirty(long offset)
    {
        CheckOffset(offset);
        var bit = offset >> GranularityBits;
        long found;
        lock (_lock)
        {
            found = FindNextSet(bit);
        }

        return found < 0 ? -1 : Math.Max(offset, found << GranularityBits);
    }

    /// <summary>
    /// The first clean byte at or after <paramref name="offset"/>, or -1 when everything from
    /// there to the end is dirty.
    /// </summary>
    public long FindNextClean(long offset)
    {
        CheckOffset(offset);
        var bit = offset >> GranularityBits;
        long found;
        lock (_lock)
        {
            found = FindNextClear(bit);
        }

        return found < 0 ? -1 : Math.Max(offset, found << GranularityBits);
    }

    /// <summary>
    /// Adjacent dirty and clean runs covering [offset, offset + length) clipped to
    /// <see cref="Size"/>, in order (what NBD <c>qemu:dirty-bitmap:NAME</c> reports).
    /// </summary>
    public IEnumerable<BitmapExtent> EnumerateExtents(long offset, long length)
    {
        CheckOffset(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return Iterate(offset, Math.Min(Size, offset + Math.Min(length, Size - offset)), dirtyOnly: false);
    }

    /// <summary>The dirty runs inside [offset, offset + length) clipped to <see cref="Size"/>, in order.</summary>
    public IEnumerable<BitmapExtent> EnumerateDirtyExtents(long offset, long length)
    {
        CheckOffset(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return Iterate(offset, Math.Min(Size, offset + Math.Min(length, Size - offset)), dirtyOnly: true);
    }

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
            for (var i = 0; i < source.Length >> 3; i++)
            {
                var index = firstWord + i;
                if (index >= _words.Length)
                {
                    break;
                }

                var word = BinaryPrimitives.ReadUInt64LittleEndian(source.Slice(i << 3, 8));
                if (word != 0)
                {
                    UpdateWord(index, _words[index] | (word & WordMask(index)));
                }
            }
        }
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

    /// <summary>A copy with the same bits, size and granularity.</summary>
    public DirtyBitmap Clone()
    {
        var copy = new DirtyBitmap(Size, Granularity);
        copy.Merge(this);
        return copy;
    }

    private IEnumerable<BitmapExtent> Iterate(long offset, long end, bool dirtyOnly)
    {
        while (offset < end)
        {
            if (dirtyOnly)
            {
                var next = FindNextDirty(offset);
                if (next < 0 || next >= end)
                {
                    yield break;
                }

                offset = next;
            }

            var extent = GetExtent(offset, end - offset);
            yield return extent;
            offset = extent.End;
        }
    }

    private bool Clip(long offset, long length, out long end)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        end = offset + Math.Min(length, Size - Math.Min(offset, Size));
        return offset < Size && end > offset;
    }

    private void CheckOffset(long offset)
    {
        if ((ulong)offset >= (ulong)Size)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"offset must lie inside the {Size}-byte disk");
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

    private ulong WordMask(long index) => index == _words.Length - 1 ? _lastWordMask : ulong.MaxValue;

    private bool TestBit(long bit) => (_words[bit >> 6] & (1UL << (int)(bit & 63))) != 0;

    // Callers hold _lock from here on.
    private void UpdateWord(long index, ulong value)
    {
        ref var word = ref _words[index];
        var before = word;
        if (before == value)
        {
            return;
        }

        word = value;
        _dirtyBits += BitOperations.PopCount(value) - BitOperations.PopCount(before);
        _hasSet.Set(index, value != 0);
        _hasClear.Set(index, value != WordMask(index));
    }

    private void SetBits(long first, long stop)
    {
        for (var index = first >> 6; index <= (stop - 1) >> 6; index++)
        {
            UpdateWord(index, _words[index] | RangeMask(index, first, stop));
        }
    }

    private void ClearBits(long first, long stop)
    {
        for (var index = first >> 6; index <= (stop - 1) >> 6; index++)
        {
            UpdateWord(index, _words[index] & ~RangeMask(index, first, stop));
        }
    }

    // The bits of word `index` that lie in [first, stop).
    private static ulong RangeMask(long index, long first, long stop)
    {
        var low = Math.Max(first - (index << 6), 0);
        var high = Math.Min(stop - (index << 6), 64);
        var upper = high == 64 ? ulong.MaxValue : (1UL << (int)high) - 1;
        return upper & (ulong.MaxValue << (int)low);
    }

    private long FindNextSet(long bit)
    {
        if (bit >= BitCount)
        {
            return -1;
        }

        var index = bit >> 6;
        var word = _words[index] & (ulong.MaxValue << (int)(bit & 63));
        if (word == 0)
        {
            index = _hasSet.FindNext(index + 1);
            if (index < 0)
            {
                return -1;
            }

            word = _words[index];
        }

        return (index << 6) + BitOperations.TrailingZeroCount(word);
    }

    private long FindNextClear(long bit)
    {
        if (bit >= BitCount)
        {
            return -1;
        }

        var index = bit >> 6;
        var word = ~_words[index] & WordMask(index) & (ulong.MaxValue << (int)(bit & 63));
        if (word == 0)
        {
            index = _hasClear.FindNext(index + 1);
            if (index < 0)
            {
                return -1;
            }

            word = ~_words[index] & WordMask(index);
        }

        return (index << 6) + BitOperations.TrailingZeroCount(word);
    }
}
