namespace Tidemark.Storage.CrashWriter;

/// <summary>One guest operation of the crash workload.</summary>
public readonly record struct CrashOp(int Index, long Offset, int Length, bool Zero, bool MayUnmap, byte Fill);

/// <summary>
/// The deterministic sequence of writes and write-zeroes the crash child performs: the child and
/// the test derive the same operations from the same seed, so the test knows what every
/// acknowledged flush covers without any output but "flushed N".
/// </summary>
public sealed class CrashWorkload(int seed, long imageSize)
{
    public const int Sector = 512;

    public long ImageSize => imageSize;

    public CrashOp this[int index]
    {
        get
        {
            // HashCode is randomised per process; the child and the test must agree.
            var random = new Random(unchecked((seed * 1_000_003) + index));
            var sectors = imageSize / Sector;
            var length = random.Next(4) switch
            {
                0 => 1,
                1 => random.Next(1, 16),
                2 => 128,
                _ => random.Next(1, 600),
            };
            var start = random.NextInt64(sectors);
            length = (int)Math.Min(length, sectors - start);
            var zero = random.Next(4) == 0;
            return new CrashOp(index, start * Sector, length * Sector, zero, zero && random.Next(2) == 0, (byte)(1 + (index % 255)));
        }
    }
}
