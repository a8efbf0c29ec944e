using System.Runtime.InteropServices;

namespace Tidemark.Storage;

/// <summary>
/// <c>posix_fadvise</c> hints about a file's pages: read these soon, or drop these. Only hints;
/// a file system that refuses one is left alone, which is why no error is reported.
/// </summary>
internal static class PageCacheAdvice
{
    // POSIX_FADV_WILLNEED and POSIX_FADV_DONTNEED from <fcntl.h> on Linux.
    private const int WillNeedAdvice = 3;
    private const int DontNeedAdvice = 4;

    /// <summary>Starts reading the range into the page cache without waiting.</summary>
    public static void WillNeed(int fd, long offset, long length) => _ = NativeMethods.posix_fadvise(fd, offset, length, WillNeedAdvice);

    /// <summary>Drops the range's clean pages from the page cache.</summary>
    public static void DontNeed(int fd, long offset, long length) => _ = NativeMethods.posix_fadvise(fd, offset, length, DontNeedAdvice);

    private static class NativeMethods
    {
        [DllImport("libc")]
        internal static extern int posix_fadvise(int fd, long offset, long len, int advice);
    }
}
