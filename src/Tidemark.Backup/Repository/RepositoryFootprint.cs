namespace Tidemark.Backup.Repository;

/// <summary>
/// What of a repository existed before a command began: its directories (the root and its
/// missing parents, the domain's directory) and its lock file. After a failure that stored
/// nothing, <see cref="Remove"/> takes away what the command created, so a first run against
/// an unreachable host or an unknown domain leaves no empty repository behind, and a failed
/// run into an existing repository leaves it as it was.
/// </summary>
public sealed class RepositoryFootprint
{
    private readonly List<string> _createdDirectories;
    private readonly string _lockPath;
    private readonly bool _lockExisted;

    private RepositoryFootprint(List<string> createdDirectories, string lockPath, bool lockExisted)
    {
        _createdDirectories = createdDirectories;
        _lockPath = lockPath;
        _lockExisted = lockExisted;
    }

    /// <summary>Notes what exists now of <paramref name="repository"/> and of <paramref name="domain"/>'s directory in it.</summary>
    public static RepositoryFootprint Before(BackupRepository repository, string domain)
    {
        ArgumentNullException.ThrowIfNull(repository);

        // Deepest first: the order they are removed in.
        var created = new List<string>();
        if (!Directory.Exists(repository.DomainDirectory(domain)))
        {
            created.Add(repository.DomainDirectory(domain));
        }

        for (var directory = repository.Root; directory is not null && !Directory.Exists(directory); directory = Path.GetDirectoryName(directory))
        {
            created.Add(directory);
        }

        var lockPath = Path.Combine(repository.Root, RepositoryLock.FileName);
        return new RepositoryFootprint(created, lockPath, File.Exists(lockPath));
    }

    /// <summary>
    /// Removes the lock file and the directories the command created, each only if nothing
    /// else is in it (a directory holding anything, such as a chain file a failed copy left for
    /// the next run to clean, stays). The caller still holds the lock: a second writer that
    /// opens the lock file meanwhile finds it in use, or finds it deleted and opens the new
    /// one (<see cref="RepositoryLock.Acquire"/>).
    /// </summary>
    public void Remove()
    {
        if (!_lockExisted)
        {
            File.Delete(_lockPath);
        }

        foreach (var directory in _createdDirectories)
        {
            TryRemoveEmpty(directory);
        }
    }

    private static void TryRemoveEmpty(string directory)
    {
        try
        {
            if (!Directory.Exists(directory))
            {
                return;
            }

            // Inside a directory the command created, every subdirectory is its own too (a disk's).
            foreach (var inner in Directory.GetDirectories(directory))
            {
                TryRemoveEmpty(inner);
            }

            if (!Directory.EnumerateFileSystemEntries(directory).Any())
            {
                Directory.Delete(directory);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Something appeared in it meanwhile, or it cannot be removed: it stays, harmless.
        }
    }
}
