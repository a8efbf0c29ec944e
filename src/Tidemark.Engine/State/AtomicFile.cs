using System.Runtime.InteropServices;
using System.Text;

namespace Tidemark.Engine.State;

/// <summary>
/// Replaces a small file so that a crash leaves either the old content or the new, never a mix
/// or an empty file (design.md, "Where things live on disk"): write a temporary file beside it,
/// fsync it, rename it over the target, then fsync the directory so the rename itself is durable.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="content"/> (UTF-8, no BOM) to <paramref name="path"/> with mode 0600, as libvirt writes its metadata.</summary>
    public static async Task WriteAsync(string path, string content, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(path) ?? ".";
        Directory.CreateDirectory(directory);
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.Asynchronous,
            };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            var stream = new FileStream(temp, options);
            await using (stream.ConfigureAwait(false))
            {
                await stream.WriteAsync(new UTF8Encoding(false).GetBytes(content), cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        SyncDirectory(directory);
    }

    /// <summary>Removes <paramref name="path"/> if it exists and makes the removal durable.</summary>
    public static void Delete(string path)
    {
        if (!File.Exists(path))
        {
            return;
        }

        File.Delete(path);
        SyncDirectory(Path.GetDirectoryName(path) ?? ".");
    }

    /// <summary>fsync of a directory: what makes a rename or an unlink in it survive a power loss.</summary>
    public static void SyncDirectory(string directory)
    {
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
