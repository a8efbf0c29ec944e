namespace Tidemark.Backup.Repository;

/// <summary>
/// The repository's writer lock: <c>REPO/.lock</c> held open with <see cref="FileShare.None"/>,
/// which .NET on Linux takes as <c>flock(LOCK_EX | LOCK_NB)</c>. The kernel drops it when the
/// holder dies, however it dies, so a killed client never leaves the repository locked. The
/// file holds the holder's pid, only for the message a second writer gets.
/// </summary>
public sealed class RepositoryLock : IDisposable
{
    public const string FileName = ".lock";

    private readonly FileStream _stream;

    private RepositoryLock(FileStream stream) => _stream = stream;

    /// <summary>Takes the lock of the repository at <paramref name="root"/> (created if missing).</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.RepositoryLocked"/>: another process holds it.</exception>
    public static RepositoryLock Acquire(string root)
    {
        Directory.CreateDirectory(root);
        var path = Path.Combine(root, FileName);
        FileStream stream;
        var attempt = 0;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);

            // A command that created the lock file deletes it when it fails having stored
            // nothing (RepositoryFootprint), still holding it. Opened just before that and
            // locked just after, the lock is on a file no one else will ever open: take the
            // file now at the path instead. Bounded: each retry means another writer came and went.
            while (IsUnlinked(stream) && ++attempt < 8)
            {
                stream.Dispose();
                stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
        }
        catch (IOException e)
        {
            var holder = "another process";
            try
            {
                using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                using var text = new StreamReader(reader);
                if (int.TryParse(text.ReadLine(), out var pid))
                {
                    holder = $"process {pid}";
                }
            }
            catch (IOException)
            {
                // The pid is only a courtesy for the message.
            }

            throw new BackupException(BackupErrorReason.RepositoryLocked, $"repository '{root}' is in use by {holder} (lock file {path}); only one writer at a time", e);
        }

        stream.SetLength(0);
        var pidText = System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n");
        stream.Write(pidText);
        stream.Flush();
        return new RepositoryLock(stream);
    }

    public void Dispose() => _stream.Dispose();

    /// <summary>The open file has no name left (Linux shows its descriptor's link as "PATH (deleted)").</summary>
    private static bool IsUnlinked(FileStream stream)
    {
        var link = new FileInfo($"/proc/self/fd/{stream.SafeFileHandle.DangerousGetHandle()}").LinkTarget;
        return link is not null && link.EndsWith(" (deleted)", StringComparison.Ordinal);
    }
}
