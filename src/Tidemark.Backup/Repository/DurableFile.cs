using Tidemark.Storage;

namespace Tidemark.Backup.Repository;

/// <summary>
/// Files that a crash leaves either absent or whole: written under a temporary name
/// (<c>.NAME.tmp</c>, which the next run removes), fsynced, renamed into place, and the
/// directory fsynced so the rename itself survives a power loss.
/// </summary>
internal static class DurableFile
{
    /// <summary>The suffix of every file being written; such files are always leftovers once no writer holds the lock.</summary>
    public const string TempSuffix = ".tmp";

    /// <summary>The temporary name <paramref name="path"/> is written under.</summary>
    public static string TempPath(string path) =>
        Path.Combine(Path.GetDirectoryName(path) ?? ".", "." + Path.GetFileName(path) + TempSuffix);

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> atomically.</summary>
    public static async Task WriteAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var temp = TempPath(path);
        try
        {
            var stream = new FileStream(temp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Options = FileOptions.Asynchronous });
            await using (stream.ConfigureAwait(false))
            {
                await stream.WriteAsync(content, cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            Commit(temp, path);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Renames an already fsynced <paramref name="temp"/> over <paramref name="path"/> and makes the rename durable.</summary>
    public static void Commit(string temp, string path)
    {
        File.Move(temp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(path) ?? ".");
    }

    /// <summary>fsync of a directory: what makes a rename or an unlink in it durable.</summary>
    public static void SyncDirectory(string directory) => HostDirectory.Sync(directory);
}
