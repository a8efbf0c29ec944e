using System.Text;
using Tidemark.Storage;

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

    /// <summary>fsync of a directory: what makes a rename or an unlink in it durable.</summary>
    public static void SyncDirectory(string directory) => HostDirectory.Sync(directory);
}
