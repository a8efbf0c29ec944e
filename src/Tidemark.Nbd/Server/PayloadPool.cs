using System.Buffers;

namespace Tidemark.Nbd.Server;

/// <summary>
/// The buffers of request payloads and reply frames, shared by every connection of a server.
/// </summary>
/// <remarks>
/// Not <see cref="ArrayPool{T}.Shared"/>: that pool keeps about 32 arrays of a size per core, while
/// one nbdcopy keeps 4 × 64 requests of 256 KiB in flight; past the shared pool every reply would
/// allocate a fresh large-object-heap array and the collector would run all the time. This pool
/// keeps up to <see cref="ArraysPerSize"/> arrays of each power-of-two size up to
/// <see cref="MaxPooledLength"/> (a 32 MiB READ frame rounds up to 64 MiB) and only allocates
/// when more are in flight than that.
/// </remarks>
internal static class PayloadPool
{
    /// <summary>64 MiB: a maximum-payload READ (32 MiB) plus its chunk headers rounds up to it.</summary>
    public const int MaxPooledLength = 64 * 1024 * 1024;

    /// <summary>
    /// 512: a handful of connections at <see cref="NbdServerLimits.MaxInFlightRequestsPerConnection"/>
    /// each; the pool holds arrays only after they have been used, so the bound costs nothing idle.
    /// </summary>
    public const int ArraysPerSize = 512;

    public static ArrayPool<byte> Shared { get; } = ArrayPool<byte>.Create(MaxPooledLength, ArraysPerSize);
}
