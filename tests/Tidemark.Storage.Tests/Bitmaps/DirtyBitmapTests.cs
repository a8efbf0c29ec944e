using FsCheck;
using FsCheck.Xunit;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// <see cref="DirtyBitmap"/> against a plain bool-per-bit model: any sequence of set, clear and
/// merge gives the same bits, extents, counts and serialized bytes.
/// </summary>
public sealed class DirtyBitmapTests
{
    // Sizes around word (64 bits) and summary (4096 bits) edges, clipped last bits included.
    private static readonly long[] Sizes = [1, 511, 512, 513, 64 * 512, (64 * 512) + 1, 4096 * 512, (4096 * 512) + 700, 262144 * 512 + 3];

    [Property(MaxTest = 300)]
    public void RandomOperations_MatchABoolModel(int seed, NonNegativeInt sizeIndex, NonNegativeInt granularityShift, PositiveInt count)
    {
        // FsCheck picks the shape; the operations come from a seeded generator so that offsets
        // and lengths spread over the whole disk (FsCheck's own integers stay small).
        var random = new Random(seed);
        var size = Sizes[sizeIndex.Get % Sizes.Length];
        var granularity = 512L << (granularityShift.Get % 4);
        var bitmap = new DirtyBitmap(size, granularity);
        var model = new BoolModel(size, granularity);
        for (var i = 0; i < count.Get % 40; i++)
        {
            var offset = random.NextInt64(size);
            var length = random.Next(3) switch
            {
                0 => random.NextInt64(2 * granularity),
                1 => random.NextInt64(64 * granularity),
                _ => random.NextInt64(size + 1),
            };
            switch (random.Next(8))
            {
                case 0:
                case 1:
                    bitmap.SetRange(offset, length);
                    model.Set(offset, length);
                    break;
                case 2:
                    bitmap.ClearRange(offset, length);
                    model.Clear(offset, length);
                    break;
                case 3:
                    var other = new DirtyBitmap(size, granularity << 1 > (1L << 31) ? granularity : granularity << 1);
                    other.SetRange(offset, length);
                    var otherModel = new BoolModel(size, other.Granularity);
                    otherModel.Set(offset, length);
                    bitmap.Merge(other);
                    model.Merge(otherModel);
                    break;
                case 5:
                    // Same granularity: the word-by-word merge, dense or scattered.
                    var same = new DirtyBitmap(size, granularity);
                    var sameModel = new BoolModel(size, granularity);
                    for (var run = random.Next(1, 200); run > 0; run--)
                    {
                        var at = random.NextInt64(size);
                        var runLength = random.NextInt64(1, 128 * granularity);
                        same.SetRange(at, runLength);
                        sameModel.Set(at, runLength);
                    }

                    bitmap.Merge(same);
                    model.Merge(sameModel);
                    break;
                case 6:
                    // Serialized words ORed in, as a loaded bitmap cluster is.
                    var words = (bitmap.DataLength + 7) >> 3;
                    var firstWord = random.NextInt64(words);
                    var data = new byte[8 * random.NextInt64(1, words - firstWord + 1)];
                    random.NextBytes(data);
                    if (random.Next(2) == 0)
                    {
                        data.AsSpan(0, data.Length / 2).Clear();
                    }

                    bitmap.OrData(firstWord * 8, data);
                    for (var bit = 0L; bit < data.Length * 8L; bit++)
                    {
                        if ((data[bit / 8] & (1 << (int)(bit % 8))) != 0)
                        {
                            model.Set(((firstWord * 64) + bit) * granularity, 1);
                        }
                    }

                    break;
                case 7:
                    // Later operations work on the copy: its summaries must be the original's.
                    bitmap = bitmap.Clone();
                    break;
                default:
                    if (length == 0)
                    {
                        bitmap.Clear();
                        model.Clear(0, size);
                    }

                    break;
            }
        }

        model.AssertEqual(bitmap);
    }

    [Property(MaxTest = 200)]
    public void MergeAcrossGranularities_LeavesNoSourceByteClean(int seed, NonNegativeInt sourceShift, NonNegativeInt targetShift)
    {
        const long Size = (8 << 20) + 1000;
        var random = new Random(seed);
        var source = new DirtyBitmap(Size, 512L << (sourceShift.Get % 10));
        var target = new DirtyBitmap(Size, 512L << (targetShift.Get % 10));
        for (var i = random.Next(20); i > 0; i--)
        {
            source.SetRange(random.NextInt64(Size), random.NextInt64(1 << 20));
        }

        target.Merge(source);

        foreach (var extent in source.EnumerateDirtyExtents(0, Size))
        {
            Assert.Equal(-1, FirstClean(target, extent.Offset, extent.End));
        }

        // And nothing far from the source's dirt: every target dirty bit overlaps a source dirty bit.
        foreach (var extent in target.EnumerateDirtyExtents(0, Size))
        {
            for (var o = extent.Offset; o < extent.End; o += target.Granularity)
            {
                var bitEnd = Math.Min(Size, ((o >> target.GranularityBits) + 1) << target.GranularityBits);
                var next = source.FindNextDirty(o >> target.GranularityBits << target.GranularityBits);
                Assert.True(next >= 0 && next < bitEnd, $"target bit at {o} has no dirty source byte");
            }
        }
    }

    [Fact]
    public void OneTebibyteAtDefaultGranularity_CostsAboutTwoMebibytes()
    {
        var bitmap = new DirtyBitmap(1L << 40);
        Assert.Equal(1L << 24, bitmap.BitCount);
        Assert.InRange(bitmap.MemoryBytes, 2L << 20, (2L << 20) + (80 << 10));
    }

    [Fact]
    public void MostlyCleanTebibyte_IteratesOnlyItsDirtyRuns()
    {
        var bitmap = new DirtyBitmap(1L << 40);
        bitmap.SetRange(5L << 30, 4096);
        bitmap.SetRange((1L << 40) - 1, 1);
        bitmap.SetRange(700L << 30, 3L << 20);

        Assert.Equal(
            [new BitmapExtent(5L << 30, 65536, true), new BitmapExtent(700L << 30, 3L << 20, true), new BitmapExtent((1L << 40) - 65536, 65536, true)],
            bitmap.EnumerateDirtyExtents(0, 1L << 40).ToList());
        Assert.Equal(5, bitmap.EnumerateExtents(0, 1L << 40).Count(e => !e.Dirty) + 2);
        Assert.Equal((1L << 40) - 65536, bitmap.FindNextDirty((700L << 30) + (3L << 20)));
    }

    [Fact]
    public void MostlyDirtyTebibyte_FindsTheCleanHoleAtOnce()
    {
        var bitmap = new DirtyBitmap(1L << 40);
        bitmap.SetRange(0, 1L << 40);
        bitmap.ClearRange(900L << 30, 65536);
        Assert.Equal(1L << 24, bitmap.DirtyBitCount + 1);
        Assert.Equal(900L << 30, bitmap.FindNextClean(0));
        Assert.Equal(-1, bitmap.FindNextClean((900L << 30) + 65536));
        Assert.Equal((1L << 40) - 65536, bitmap.CountDirtyBytes());
    }

    [Fact]
    public void ThousandsOfRuns_EnumerateAcrossBatchesWithoutGapOrOverlap()
    {
        var bitmap = new DirtyBitmap((2000 * 512) + 100, 512);
        for (var bit = 1; bit < 2001; bit += 2)
        {
            bitmap.SetRange(bit * 512L, 1);
        }

        var all = bitmap.EnumerateExtents(0, bitmap.Size).ToList();
        Assert.Equal(2001, all.Count);
        Assert.Equal(0, all[0].Offset);
        Assert.All(all.Zip(all.Skip(1)), p => Assert.True(p.First.End == p.Second.Offset && p.First.Dirty != p.Second.Dirty));
        Assert.Equal(bitmap.Size, all[^1].End);
        Assert.Equal(100, all[^1].Length);

        var dirty = bitmap.EnumerateDirtyExtents(700, bitmap.Size).ToList();
        Assert.Equal(1000, dirty.Count);
        Assert.Equal(new BitmapExtent(700, 324, true), dirty[0]);

        Span<BitmapExtent> reply = stackalloc BitmapExtent[3];
        Assert.Equal(3, bitmap.GetExtents(600, 10_000, dirtyOnly: false, reply));
        Assert.Equal([new(600, 424, true), new(1024, 512, false), new BitmapExtent(1536, 512, true)], reply.ToArray());
    }

    [Fact]
    public void ClearRange_KeepsPartlyCoveredBits()
    {
        var bitmap = new DirtyBitmap(1 << 20, 65536);
        bitmap.SetRange(0, 1 << 20);
        bitmap.ClearRange(1000, 200_000);
        // Bits 1 and 2 lie wholly inside [1000, 201000); 0 and 3 only partly.
        Assert.Equal([true, false, false, true], Enumerable.Range(0, 4).Select(i => bitmap.IsDirty(i * 65536L)));
    }

    [Fact]
    public void Serialization_IsLeastSignificantBitFirst()
    {
        var bitmap = new DirtyBitmap(64 << 20, 65536);
        foreach (var cluster in new[] { 3, 16, 32, 33 })
        {
            bitmap.SetRange(cluster * 65536L, 1);
        }

        var data = new byte[8];
        bitmap.CopyDataTo(0, data);
        Assert.Equal(new byte[] { 0x08, 0x00, 0x01, 0x00, 0x03, 0, 0, 0 }, data);

        var copy = new DirtyBitmap(64 << 20, 65536);
        copy.OrData(0, data);
        Assert.Equal(bitmap.EnumerateExtents(0, 64 << 20), copy.EnumerateExtents(0, 64 << 20));
    }

    [Fact]
    public void OrData_IgnoresBitsPastTheEnd()
    {
        // 10 bits: the 6 high bits of the second byte and every later byte cover no disk byte.
        var bitmap = new DirtyBitmap(10 * 512, 512);
        bitmap.OrData(0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        Assert.Equal(10, bitmap.DirtyBitCount);
        Assert.Equal(10 * 512, bitmap.CountDirtyBytes());
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(256L)]
    [InlineData(1000L)]
    [InlineData(4L << 30)]
    public void BadGranularity_IsRefused(long granularity)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new DirtyBitmap(1 << 20, granularity));
        Assert.Equal("granularity", error.ParamName);
    }

    [Fact]
    public void TooManyBits_IsRefusedBeforeAllocating()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DirtyBitmap(1L << 50, 512));
    }

    [Fact]
    public void ConcurrentSetRange_LosesNoBit()
    {
        var bitmap = new DirtyBitmap(1L << 30, 4096);
        Parallel.For(0, 1 << 18, i => bitmap.SetRange(i * 4096L, 1));
        Assert.Equal(1L << 18, bitmap.DirtyBitCount);
        Assert.Equal(-1, bitmap.FindNextClean(0));
    }

    private static long FirstClean(DirtyBitmap bitmap, long start, long end)
    {
        var clean = bitmap.FindNextClean(start);
        return clean >= 0 && clean < end ? clean : -1;
    }

    private sealed class BoolModel(long size, long granularity)
    {
        private readonly bool[] _bits = new bool[(size + granularity - 1) / granularity];

        public void Set(long offset, long length)
        {
            var end = Math.Min(size, offset + length);
            for (var o = offset; o < end;)
            {
                _bits[o / granularity] = true;
                o = ((o / granularity) + 1) * granularity;
            }
        }

        public void Clear(long offset, long length)
        {
            var end = Math.Min(size, offset + length);
            var first = (offset + granularity - 1) / granularity;
            var stop = end == size ? _bits.LongLength : end / granularity;
            for (var bit = first; bit < stop; bit++)
            {
                _bits[bit] = false;
            }
        }

        public void Merge(BoolModel other)
        {
            for (var bit = 0L; bit < other._bits.Length; bit++)
            {
                if (other._bits[bit])
                {
                    Set(bit * other.Granularity, other.Granularity);
                }
            }
        }

        private long Granularity => granularity;

        public void AssertEqual(DirtyBitmap bitmap)
        {
            Assert.Equal(_bits.LongLength, bitmap.BitCount);
            Assert.Equal(_bits.Count(b => b), bitmap.DirtyBitCount);
            var expected = new List<BitmapExtent>();
            for (var bit = 0L; bit < _bits.Length; bit++)
            {
                var start = bit * granularity;
                var extent = new BitmapExtent(start, Math.Min(size, start + granularity) - start, _bits[bit]);
                if (expected.Count > 0 && expected[^1].Dirty == extent.Dirty)
                {
                    expected[^1] = expected[^1] with { Length = expected[^1].Length + extent.Length };
                }
                else
                {
                    expected.Add(extent);
                }
            }

            Assert.Equal(expected, bitmap.EnumerateExtents(0, size).ToList());
            Assert.Equal(expected.Where(e => e.Dirty), bitmap.EnumerateDirtyExtents(0, size).ToList());
            var dirtyBytes = expected.Where(e => e.Dirty).Sum(e => e.Length);
            Assert.Equal(dirtyBytes, bitmap.CountDirtyBytes());

            var data = new byte[(bitmap.DataLength + 7) & ~7];
            bitmap.CopyDataTo(0, data);
            for (var bit = 0L; bit < _bits.Length; bit++)
            {
                Assert.Equal(_bits[bit], (data[bit / 8] & (1 << (int)(bit % 8))) != 0);
            }

            Assert.All(data.AsSpan((int)bitmap.DataLength).ToArray(), b => Assert.Equal(0, b));
        }
    }
}
