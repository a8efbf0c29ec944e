namespace Tidemark.Storage.Tests;

public sealed class ZeroDetectionTests
{
    /// <summary>
    /// One non-zero byte anywhere (first bytes, inside an unrolled step, in the tail past the
    /// last whole step) is found, in buffers of lengths around the step sizes.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(257)]
    [InlineData(4096)]
    [InlineData(65536 + 77)]
    public void IsZero_FindsASingleNonZeroByteAnywhere(int length)
    {
        var buffer = new byte[length];
        Assert.True(ZeroDetection.IsZero(buffer));
        var positions = Enumerable.Range(0, Math.Min(length, 300)).Concat(Enumerable.Range(Math.Max(0, length - 300), Math.Min(length, 300))).Concat(Enumerable.Range(0, length / 61).Select(i => i * 61));
        foreach (var at in positions)
        {
            buffer[at] = 0x01;
            Assert.False(ZeroDetection.IsZero(buffer), $"byte {at} of {length}");
            buffer[at] = 0;
        }

        Assert.True(ZeroDetection.IsZero(buffer));
    }
}
