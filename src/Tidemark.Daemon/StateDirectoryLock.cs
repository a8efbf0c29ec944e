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
    private readonly FileStream _file;

    private StateDirectoryLock(FileStream file)
    {
        _file = file;
    }

    /// <summary>The lock file's name inside the state directory.</summary>
    public const string FileName = "daemon.lock";

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
            var holder = ReadPid(path);
            throw new DaemonException(
                DaemonErrorReason.StateDirectoryInUse,
                $"another Tidemark daemon{(holder is null ? "" : $" (pid {holder})")} is using the state directory '{stateRoot}' (lock file '{path}')",
                e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DaemonException(DaemonErrorReason.StateDirectoryUnusable, $"cannot open lock file '{path}': {e.Message}", e);
        }

        file.SetLength(0);
        var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        file.Write(pid);
        file.Flush(flushToDisk: false);
        return new StateDirectoryLock(file);
    }

    public void Dispose() => _file.Dispose();

    private static string? ReadPid(string path)
    {
        try
        {
            // The holder's lock is advisory: reading through another handle is allowed.
            using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var text = new StreamReader(reader);
            return text.ReadLine()?.Trim() is { Length: > 0 } pid ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
