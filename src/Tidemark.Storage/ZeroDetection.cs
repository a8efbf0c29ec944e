using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Tidemark.Storage;

/// <summary>
/// Whether a buffer holds only zero bytes: what a copy asks of every block it read, to leave
/// zero blocks unwritten (QEMU's buffer_is_zero, util/bufferiszero.c).
/// </summary>
/// <remarks>
/// A Native AOT build targets the baseline x64 instruction set, where the library's span search
/// compares one 16-byte vector per step; for a block that is zero throughout (the case that
/// reads it all) that ran at ~10 GB/s. As bufferiszero.c does, this looks at the first bytes
/// alone first (data rarely starts with many zeroes), then ORs eight vectors per step and
/// tests once: ~25 GB/s on the same baseline, with no instruction the baseline lacks.
/// </remarks>
public static class ZeroDetection
{
    private const int Unroll = 8;

    public static bool IsZero(ReadOnlySpan<byte> data)
    {
        var blockBytes = Vector128<byte>.Count * Unroll;
        if (data.Length < blockBytes * 2 || !Vector128.IsHardwareAccelerated)
        {
            return !data.ContainsAnyExcept((byte)0);
        }

        ref var start = ref MemoryMarshal.GetReference(data);
        if (Vector128.LoadUnsafe(ref start) != Vector128<byte>.Zero)
        {
            return false;
        }

        var whole = (nuint)(data.Length - (data.Length % blockBytes));
        for (nuint at = 0; at < whole; at += (nuint)blockBytes)
        {
            var any = (Vector128.LoadUnsafe(ref start, at) | Vector128.LoadUnsafe(ref start, at + 16))
                | (Vector128.LoadUnsafe(ref start, at + 32) | Vector128.LoadUnsafe(ref start, at + 48))
                | ((Vector128.LoadUnsafe(ref start, at + 64) | Vector128.LoadUnsafe(ref start, at + 80))
                | (Vector128.LoadUnsafe(ref start, at + 96) | Vector128.LoadUnsafe(ref start, at + 112)));
            if (any != Vector128<byte>.Zero)
            {
                return false;
            }
        }

        return !data[(int)whole..].ContainsAnyExcept((byte)0);
    }
}
