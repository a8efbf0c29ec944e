using Tidemark.Backup.Run;

namespace Tidemark.Backup.Tests;

/// <summary>The range arithmetic that turns NBD extents into whole target clusters.</summary>
public sealed class ByteRangeTests
{
    private const long Cluster = 65536;

    [Fact]
    public void Merge_JoinsTouchingAndOverlapping_DropsEmpty()
    {
        var merged = ByteRange.Merge([new(10, 20), new(0, 10), new(15, 30), new(40, 40), new(50, 60)]);
        Assert.Equal([new ByteRange(0, 30), new ByteRange(50, 60)], merged);
    }

    [Theory]
    [InlineData(512, 1024, 0, Cluster)]
    [InlineData(Cluster, 2 * Cluster, Cluster, 2 * Cluster)]
    [InlineData(3 * Cluster - 1, 3 * Cluster + 1, 2 * Cluster, 4 * Cluster)]
    [InlineData(9 * Cluster + 5, 9 * Cluster + 100, 9 * Cluster, 9 * Cluster + 4096)]
    public void AlignOut_WidensToClusters_ClippedToTheDisk(long start, long end, long alignedStart, long alignedEnd) =>
        Assert.Equal(new ByteRange(alignedStart, alignedEnd), new ByteRange(start, end).AlignOut(Cluster, 9 * Cluster + 4096));

    [Theory]
    [InlineData(512, 3 * Cluster - 1, Cluster, 2 * Cluster)]
    [InlineData(512, 1024, Cluster, Cluster)]
    [InlineData(8 * Cluster + 1, 9 * Cluster + 4096, 9 * Cluster, 9 * Cluster + 4096)]
    public void AlignIn_KeepsWholeClusters_TheShortLastClusterCounts(long start, long end, long alignedStart, long alignedEnd) =>
        Assert.Equal(new ByteRange(alignedStart, alignedEnd), new ByteRange(start, end).AlignIn(Cluster, 9 * Cluster + 4096));

    [Fact]
    public void Subtract_CutsHolesOutOfRanges()
    {
        var rest = ByteRange.Subtract([new(0, 100), new(200, 300)], [new(50, 60), new(90, 210), new(290, 400)]);
        Assert.Equal([new ByteRange(0, 50), new ByteRange(60, 90), new ByteRange(210, 290)], rest);
    }

    [Fact]
    public void Split_CutsOnMultiplesOfTheChunk()
    {
        Assert.Equal([new ByteRange(5, 8), new ByteRange(8, 16), new ByteRange(16, 17)], new ByteRange(5, 17).Split(8));
    }
}
