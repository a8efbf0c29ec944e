using System.Text;

namespace Tidemark.Engine.State;

/// <summary>
/// The files one job of a domain has created, written down before each is created
/// (design.md, "Crash"): the record <c>jobs/&lt;domain&gt;.files</c> lists one absolute path per
/// line and is replaced atomically on every change. While a job runs nothing else writes it.
/// When the job ends it keeps or removes its files itself and then <see cref="CompleteAsync"/>
/// drops the record; a record still present at the next start means the job was cut short,
/// and <see cref="CleanUp"/> removes every file it lists.
/// </summary>
/// <remarks>
/// A path is recorded before its file exists, so after a crash a listed file may be missing
/// (never created) or partly written; either way it is the job's and is removed. A file the
/// job did not create (a target given with REUSE_EXTERNAL) must never be recorded.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (only WaitAsync is used), so there is nothing to dispose.")]
public sealed class JobRecord
{
    private readonly List<string> _files = [];
    private readonly SemaphoreSlim _gate = new(1, 1);

    internal JobRecord(string path)
    {
        Path = path;
    }

    /// <summary>The record file.</summary>
    public string Path { get; }

    /// <summary>The files recorded so far.</summary>
    public IReadOnlyList<string> Files
    {
        get
        {
            lock (_files)
            {
                return [.. _files];
            }
        }
    }

    /// <summary>Records <paramref name="file"/> durably; create the file only after this returns.</summary>
    public async Task AddAsync(string file, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        if (file.Contains('\n', StringComparison.Ordinal))
        {
            // One path per line: a name with a newline would be read back as two paths.
            throw new ArgumentException("a job's file name cannot contain a newline", nameof(file));
        }

        var full = System.IO.Path.GetFullPath(file);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            string content;
            lock (_files)
            {
                _files.Add(full);
                content = Format(_files);
            }

            await AtomicFile.WriteAsync(Path, content, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Drops the record: the job has ended and dealt with its files.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_files)
            {
                _files.Clear();
            }

            AtomicFile.Delete(Path);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The job is left to the next host (<c>BackupJob.HandOverAsync</c>): the record becomes
    /// <c>jobs/&lt;domain&gt;.carried</c>, which the next host's start-up clean-up leaves alone
    /// and the resumed job takes back (<see cref="TakeCarried"/>). One the next host does not
    /// take (the hand-over did not finish) is cleaned up as a crashed job's.
    /// </summary>
    public async Task CarryOverAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (File.Exists(Path))
            {
                File.Move(Path, CarriedPath(Path), overwrite: true);
                AtomicFile.SyncDirectory(System.IO.Path.GetDirectoryName(Path)!);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The record of a job carried over to this host, taken back under its own name
    /// (<paramref name="recordPath"/>, <c>jobs/&lt;domain&gt;.files</c>) so that a crash from
    /// here on cleans its files up; an empty record when there is none.
    /// </summary>
    internal static JobRecord TakeCarried(string recordPath)
    {
        var record = new JobRecord(recordPath);
        var carried = CarriedPath(recordPath);
        if (File.Exists(carried))
        {
            File.Move(carried, recordPath, overwrite: true);
            AtomicFile.SyncDirectory(System.IO.Path.GetDirectoryName(recordPath)!);
            record._files.AddRange(File.ReadAllLines(recordPath).Where(l => l.Length > 0));
        }

        return record;
    }

    /// <summary>Removes the files a record lists, then the record, now.</summary>
    internal IReadOnlyList<string> CleanUpNow()
    {
        var removed = RemoveListed(Path);
        lock (_files)
        {
            _files.Clear();
        }

        return removed;
    }

    /// <summary>
    /// At start-up: for every record left in <paramref name="jobsDirectory"/> whose name matches
    /// <paramref name="pattern"/>, removes the files it lists, then the record. Returns the files
    /// that were removed. Jobs cut short by a crash leave <c>*.files</c>; hand-overs that did not
    /// finish leave <c>*.carried</c>, swept once every domain handed over has been taken up.
    /// </summary>
    internal static IReadOnlyList<string> CleanUp(string jobsDirectory, string pattern = "*.files")
    {
        var removed = new List<string>();
        if (!Directory.Exists(jobsDirectory))
        {
            return removed;
        }

        foreach (var record in Directory.EnumerateFiles(jobsDirectory, pattern).Order(StringComparer.Ordinal).ToList())
        {
            removed.AddRange(RemoveListed(record));
        }

        return removed;
    }

    private static List<string> RemoveListed(string record)
    {
        var removed = new List<string>();
        if (!File.Exists(record))
        {
            return removed;
        }

        foreach (var line in File.ReadAllLines(record))
        {
            // Only absolute paths were ever written; anything else is not ours to delete.
            if (line.Length > 0 && System.IO.Path.IsPathFullyQualified(line) && File.Exists(line))
            {
                File.Delete(line);
                removed.Add(line);
            }
        }

        AtomicFile.Delete(record);
        return removed;
    }

    private static string CarriedPath(string recordPath) => System.IO.Path.ChangeExtension(recordPath, ".carried");

    private static string Format(List<string> files)
    {
        var sb = new StringBuilder();
        foreach (var f in files)
        {
            sb.Append(f).Append('\n');
        }

        return sb.ToString();
    }
}
