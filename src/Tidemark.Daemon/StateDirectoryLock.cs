using System.Globalization;

namespace Tidemark.Daemon;

/// <summary>
/// The one daemon of a state directory: an exclusive lock on <c>&lt;state-dir&gt;/daemon.lock</c>
/// (flock, taken by opening the file unshared), held for the daemon's life and released by the
/// kernel if it dies. Two daemons on one directory would each believe they own its domains'
/// images and job records.
/// </summary>
internal sealed class StateDirectoryLock : IDisposable
{
    /// <summary>The lock file's name inside the state directory.</summary>
    public const string FileName = "daemon.lock";

    /// <summary>
    /// Where the holder's process id is written. Not in the lock file itself: .NET opens every
    /// file with a shared flock, which the holder's exclusive one refuses, so a refused daemon
    /// could not read it there.
    /// </summary>
    public const string PidFileName = "daemon.pid";

    private readonly FileStream _file;
    private readonly string _pidFile;

    private StateDirectoryLock(FileStream file, string pidFile)
    {
        _file = file;
        _pidFile = pidFile;
    }

    /// <summary>Takes the lock, or says which process holds it.</summary>
    /// <exception cref="DaemonException">Another daemon holds the lock, or the file cannot be opened.</exception>
    public static StateDirectoryLock Acquire(string stateRoot)
    {
        Directory.CreateDirectory(stateRoot);
        var path = Path.Combine(stateRoot, FileName);
        FileStream file;
        try
        {
            // FileShare.None is an exclusive, non-blocking flock on Unix.
            file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            var holder = ReadPid(Path.Combine(stateRoot, PidFileName));
            throw new DaemonException(
                DaemonErrorReason.StateDirectoryInUse,
                $"another Tidemark daemon{(holder is null ? "" : $" (pid {holder})")} is using the state directory '{stateRoot}' (lock file '{path}')",
                e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DaemonException(DaemonErrorReason.StateDirectoryUnusable, $"cannot open lock file '{path}': {e.Message}", e);
        }

        var pidFile = Path.Combine(stateRoot, PidFileName);
        try
        {
            File.WriteAllText(pidFile, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            file.Dispose();
            throw new DaemonException(DaemonErrorReason.StateDirectoryUnusable, $"cannot write '{pidFile}': {e.Message}", e);
        }

        return new StateDirectoryLock(file, pidFile);
    }

    public void Dispose()
    {
        // The pid file goes first: once the lock is released it may be another daemon's.
        try
        {
            File.Delete(_pidFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: a stale pid file only ever names a process in a refusal message.
        }

        _file.Dispose();
    }

    private static string? ReadPid(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim() is { Length: > 0 } pid ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
