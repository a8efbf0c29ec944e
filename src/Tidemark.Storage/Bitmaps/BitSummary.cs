using System.Diagnostics;
using System.Numerics;

namespace Tidemark.Storage.Bitmaps;

/// <summary>
/// The upper levels of a hierarchical bitmap: one flag per leaf word ("this word has what we
/// look for"), then one flag per word of flags, and so on until one word remains. Finding the
/// next flagged leaf walks up until a word has a flag and then straight down, so a search over
/// 2^24 leaf bits (a 1 TiB disk at 64 KiB) reads at most a few dozen words.
/// </summary>
/// <remarks>
/// Memory: each level is 1/64 of the one below, so all levels together cost ~1.6 % of the leaf
/// words. Not thread-safe: <see cref="DirtyBitmap"/> serialises every call under its lock.
/// Invariant: bit i of level k+1 is set iff word i of level k is non-zero.
/// </remarks>
internal sealed class BitSummary
{
    // _levels[0] holds one flag per leaf word; the last level has exactly one word.
    private readonly ulong[][] _levels;
    private readonly long _leafCount;

    /// <param name="leafCount">Number of leaf words summarised.</param>
    /// <param name="allFlagged">Start with every leaf flagged instead of none.</param>
    public BitSummary(long leafCount, bool allFlagged)
    {
        Debug.Assert(leafCount > 0);
        _leafCount = leafCount;
        var levels = new List<ulong[]>();
        var flags = leafCount;
        do
        {
            var words = (flags + 63) >> 6;
            levels.Add(new ulong[words]);
            flags = words;
        }
        while (flags > 1);
        _levels = [.. levels];
        if (allFlagged)
        {
            Fill();
        }
    }

    /// <summary>Bytes held by the summary levels (for memory accounting).</summary>
    public long MemoryBytes => _levels.Sum(l => (long)l.Length * sizeof(ulong));

    /// <summary>Records whether leaf word <paramref name="leaf"/> is flagged.</summary>
    public void Set(long leaf, bool flagged)
    {
        Debug.Assert(leaf >= 0 && leaf < _leafCount);
        var index = leaf;
        foreach (var level in _levels)
        {
            ref var word = ref level[index >> 6];
            var bit = 1UL << (int)(index & 63);
            var before = word;
            word = flagged ? before | bit : before & ~bit;

            // The level above changes only when this word turns empty or stops being empty.
            if ((before == 0) == (word == 0))
            {
                return;
            }

            index >>= 6;
        }
    }

    /// <summary>
    /// Re-derives the flags of leaves [<paramref name="first"/>, <paramref name="stop"/>) from
    /// the leaf words themselves, then the levels above them, one pass per level: a leaf is
    /// flagged when its word differs from <paramref name="unflagged"/> (from
    /// <paramref name="lastUnflagged"/> for the last leaf, whose word may be partly used). After
    /// a bulk change of many adjacent leaf words (a loaded bitmap cluster, a dense merge) this
    /// costs one compare per leaf instead of <see cref="Set"/>'s walk up for every leaf that
    /// changed state.
    /// </summary>
    public void Refresh(ReadOnlySpan<ulong> leaves, long first, long stop, ulong unflagged, ulong lastUnflagged)
    {
        Debug.Assert(leaves.Length == _leafCount && first >= 0 && first <= stop && stop <= _leafCount);
        if (first == stop)
        {
            return;
        }

        var level = _levels[0];
        for (var index = first >> 6; index <= (stop - 1) >> 6; index++)
        {
            var from = (int)Math.Max(first, index << 6);
            var to = (int)Math.Min(stop, (index + 1) << 6);
            ulong covered = 0, flagged = 0;
            for (var leaf = from; leaf < to; leaf++)
            {
                var bit = 1UL << (leaf & 63);
                covered |= bit;
                flagged |= leaves[leaf] != unflagged ? bit : 0;
            }

            if (to == _leafCount)
            {
                var bit = 1UL << ((to - 1) & 63);
                flagged = (flagged & ~bit) | (leaves[to - 1] != lastUnflagged ? bit : 0);
            }

            level[index] = (level[index] & ~covered) | flagged;
        }

        // Words [first, stop) of level k changed: re-derive their flags in level k + 1.
        for (var k = 1; k < _levels.Length; k++)
        {
            first >>= 6;
            stop = ((stop - 1) >> 6) + 1;
            var below = _levels[k - 1];
            level = _levels[k];
            for (var index = first; index < stop; index++)
            {
                ref var word = ref level[index >> 6];
                var bit = 1UL << (int)(index & 63);
                word = below[index] != 0 ? word | bit : word & ~bit;
            }
        }
    }

    /// <summary>Takes every flag of <paramref name="other"/>, a summary of as many leaves.</summary>
    public void CopyFrom(BitSummary other)
    {
        Debug.Assert(other._leafCount == _leafCount);
        for (var k = 0; k < _levels.Length; k++)
        {
            other._levels[k].CopyTo(_levels[k], 0);
        }
    }

    /// <summary>The first flagged leaf at or after <paramref name="leaf"/>, or -1.</summary>
    public long FindNext(long leaf)
    {
        if (leaf >= _leafCount)
        {
            return -1;
        }

        // Ascend until a word holds a flag at or after the position.
        var level = 0;
        var position = leaf;
        while (true)
        {
            var words = _levels[level];
            var wordIndex = position >> 6;
            if (wordIndex >= words.Length)
            {
                return -1;
            }

            var word = words[wordIndex] & (ulong.MaxValue << (int)(position & 63));
            if (word != 0)
            {
                position = (wordIndex << 6) + BitOperations.TrailingZeroCount(word);
                break;
            }

            if (level == _levels.Length - 1)
            {
                return -1;
            }

            position = wordIndex + 1;
            level++;
        }

        // Descend: a flag at level k guarantees a non-zero word at level k-1.
        while (level > 0)
        {
            level--;
            var word = _levels[level][position];
            Debug.Assert(word != 0);
            position = (position << 6) + BitOperations.TrailingZeroCount(word);
        }

        return position;
    }

    /// <summary>Flags every leaf.</summary>
    public void Fill()
    {
        var flags = _leafCount;
        foreach (var level in _levels)
        {
            var full = (int)(flags >> 6);
            Array.Fill(level, ulong.MaxValue, 0, full);
            var rest = (int)(flags & 63);
            if (rest != 0)
            {
                level[full] = (1UL << rest) - 1;
            }

            flags = level.Length;
        }
    }

    /// <summary>Clears every flag.</summary>
    public void Reset()
    {
        foreach (var level in _levels)
        {
            Array.Clear(level);
        }
    }
}
