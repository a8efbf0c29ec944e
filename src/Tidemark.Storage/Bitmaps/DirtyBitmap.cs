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
public sealed partial class DirtyBitmap
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

        // A range already dirty changes nothing, and once a workload's clusters are marked most
        // of its writes are such: one read of a word instead of the lock. Bits are only ever set
        // under the lock, so a set bit seen here is a set bit; a clear racing with this call is
        // simply ordered after it, as it could be with the lock taken.
        var index = first >> 6;
        if (index == last >> 6)
        {
            var mask = RangeMask(index, first, last + 1);
            if ((Volatile.Read(ref _words[index]) & mask) == mask)
            {
                return;
            }
        }

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

        if (source.GranularityBits > GranularityBits)
        {
            // Coarser source: each dirty run expands to whole bits here.
            foreach (var extent in source.EnumerateDirtyExtents(0, source.Size))
            {
                SetRange(extent.Offset, extent.Length);
            }

            return;
        }

        // Same or finer source: OR its non-zero words in batches, each folded to this
        // granularity. Only one lock is held at a time, so two merges in opposite directions
        // cannot deadlock.
        var shift = GranularityBits - source.GranularityBits;
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
                if (shift == 0)
                {
                    OrWords(indexes[..count], values[..count]);
                    continue;
                }

                for (var i = 0; i < count; i++)
                {
                    OrSourceWord(indexes[i], values[i], shift);
                }
            }
        }
    }

    // ORs values[i] into word indexes[i] (ascending indexes), then brings the summaries up to
    // date: word by word when the changed words are scattered, in one refresh of their span
    // when they lie close together (a dense merge). Callers hold _lock.
    private void OrWords(ReadOnlySpan<long> indexes, ReadOnlySpan<ulong> values)
    {
        long first = -1, last = -1, changed = 0;
        for (var i = 0; i < indexes.Length; i++)
        {
            var index = indexes[i];
            if (OrWord(index, values[i]))
            {
                first = first < 0 ? index : first;
                last = index;
                changed++;
            }
        }

        if (changed == 0)
        {
            return;
        }

        if (last - first + 1 <= changed * 8)
        {
            RefreshSummaries(first, last + 1);
            return;
        }

        for (var i = 0; i < indexes.Length; i++)
        {
            var index = indexes[i];
            _hasSet.Set(index, _words[index] != 0);
            _hasClear.Set(index, _words[index] != WordMask(index));
        }
    }

    // ORs value into word index (bits past the bitmap's end dropped) and keeps the bit count,
    // leaving the summaries to the caller; true when the word changed. Callers hold _lock.
    private bool OrWord(long index, ulong value)
    {
        ref var word = ref _words[index];
        var before = word;
        var after = before | (value & WordMask(index));
        if (after == before)
        {
            return false;
        }

        word = after;
        _dirtyBits += BitOperations.PopCount(after) - BitOperations.PopCount(before);
        return true;
    }

    // Re-derives both summaries over words [first, stop) after a bulk change. Callers hold _lock.
    private void RefreshSummaries(long first, long stop)
    {
        _hasSet.Refresh(_words, first, stop, unflagged: 0, lastUnflagged: 0);
        _hasClear.Refresh(_words, first, stop, unflagged: ulong.MaxValue, lastUnflagged: _lastWordMask);
    }

    // ORs word `index` of a source whose bit k covers this bitmap's bit k >> shift. Callers hold _lock.
    private void OrSourceWord(long index, ulong value, int shift)
    {
        var firstBit = (index << 6) >> shift;
        if (shift == 0)
        {
            UpdateWord(index, _words[index] | value);
            return;
        }

        if (shift >= 6)
        {
            // The whole source word falls inside one bit here.
            var target = firstBit >> 6;
            UpdateWord(target, _words[target] | (1UL << (int)(firstBit & 63)));
            return;
        }

        // Groups of 2^shift source bits fold into 64 >> shift consecutive bits of one word here.
        var groupSize = 1 << shift;
        var groupMask = (1UL << groupSize) - 1;
        ulong folded = 0;
        for (var group = 0; group < 64 >> shift; group++)
        {
            if (((value >> (group * groupSize)) & groupMask) != 0)
            {
                folded |= 1UL << group;
            }
        }

        var word = firstBit >> 6;
        UpdateWord(word, _words[word] | (folded << (int)(firstBit & 63)));
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

    /// <summary>A copy with the same bits, size and granularity.</summary>
    public DirtyBitmap Clone()
    {
        // A straight copy of the words and both summaries: a merge into an empty bitmap would
        // walk the summaries once per non-zero word (~0.5 M walks for a dense 1 TiB bitmap).
        var copy = new DirtyBitmap(Size, Granularity);
        lock (_lock)
        {
            _words.CopyTo(copy._words, 0);
            copy._hasSet.CopyFrom(_hasSet);
            copy._hasClear.CopyFrom(_hasClear);
            copy._dirtyBits = _dirtyBits;
        }

        return copy;
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with the adjacent runs (or, with
    /// <paramref name="dirtyOnly"/>, the dirty runs) that start at <paramref name="offset"/>
    /// and lie inside [offset, offset + length) clipped to <see cref="Size"/>, all read under
    /// one lock acquisition, so they are one consistent view; returns how many it wrote. Fewer
    /// than the room means the range is exhausted. This is the shape of an NBD block status
    /// reply; the enumerators use it in batches.
    /// </summary>
    public int GetExtents(long offset, long length, bool dirtyOnly, Span<BitmapExtent> destination)
    {
        CheckOffset(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var end = Math.Min(Size, offset + Math.Min(length, Size - offset));
        var count = 0;
        lock (_lock)
        {
            while (offset < end && count < destination.Length)
            {
                var bit = offset >> GranularityBits;
                bool dirty;
                if (dirtyOnly)
                {
                    var next = FindNextSet(bit);
                    if (next < 0 || next << GranularityBits >= end)
                    {
                        break;
                    }

                    offset = Math.Max(offset, next << GranularityBits);
                    bit = offset >> GranularityBits;
                    dirty = true;
                }
                else
                {
                    dirty = TestBit(bit);
                }

                var stop = dirty ? FindNextClear(bit) : FindNextSet(bit);
                var stopOffset = stop < 0 ? end : Math.Min(end, stop << GranularityBits);
                destination[count++] = new BitmapExtent(offset, stopOffset - offset, dirty);
                offset = stopOffset;
            }
        }

        return count;
    }

    private IEnumerable<BitmapExtent> Iterate(long offset, long end, bool dirtyOnly)
    {
        // Batches keep the lock short for concurrent writers and the per-run cost low; they
        // start small so that a scan finding little (a clean bitmap) allocates little.
        var batch = new BitmapExtent[8];
        while (offset < end)
        {
            var count = GetExtents(offset, end - offset, dirtyOnly, batch);
            for (var i = 0; i < count; i++)
            {
                yield return batch[i];
            }

            if (count < batch.Length)
            {
                yield break;
            }

            offset = batch[count - 1].End;
            if (batch.Length < 256)
            {
                batch = new BitmapExtent[batch.Length * 4];
            }
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
