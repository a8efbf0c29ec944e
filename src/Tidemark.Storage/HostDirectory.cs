using System.Runtime.InteropServices;

namespace Tidemark.Storage;

/// <summary>The directories image and state files live in.</summary>
public static class HostDirectory
{
    /// <summary>
    /// fsync of a directory: what makes a rename or an unlink in it survive a power loss (the
    /// last step of every atomic replace: write a temporary file, fsync it, rename it, sync here).
    /// A directory that cannot be opened is left as it is.
    /// </summary>
    public static void Sync(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var fd = NativeMethods.open(directory, NativeMethods.ORdOnly | NativeMethods.OCloexec);
        if (fd < 0)
        {
            return;
        }

        try
        {
            _ = NativeMethods.fsync(fd);
        }
        finally
        {
            _ = NativeMethods.close(fd);
        }
    }

    private static class NativeMethods
    {
        // <fcntl.h> on Linux; x86-64 and arm64 agree on these two (O_DIRECTORY differs, and a
        // plain read-only open of a directory needs no flag to succeed).
        internal const int ORdOnly = 0;
        internal const int OCloexec = 0x80000;

        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
        internal static extern int open([MarshalAs(UnmanagedType.LPStr)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        internal static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        internal static extern int close(int fd);
    }
}
