using System.Runtime.InteropServices;

namespace Tidemark.Cli.Commands.Image.Info;

/// <summary>The allocated size of a file (st_blocks), which .NET does not expose.</summary>
internal static class NativeStat
{
    /// <summary>Bytes allocated on disk, from <c>du --block-size=1</c>-like accounting via <c>stat(1)</c>'s st_blocks.</summary>
    /// <exception cref="IOException">The size cannot be read.</exception>
    public static long AllocatedBytes(string path)
    {
        // struct stat differs across architectures; statx has one layout everywhere.
        var buffer = new byte[256];
        if (NativeMethods.statx(-100, path, 0, 0x400, buffer) != 0)
        {
            throw new IOException($"statx failed for {path} (errno {Marshal.GetLastPInvokeError()})");
        }

        // struct statx: stx_blocks is the u64 at offset 48, in 512-byte units.
        return (long)BitConverter.ToUInt64(buffer, 48) * 512;
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        internal static extern int statx(int dirfd, string pathname, int flags, uint mask, byte[] statxbuf);
    }
}
