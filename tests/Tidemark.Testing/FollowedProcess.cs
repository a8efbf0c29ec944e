using System.Diagnostics;

namespace Tidemark.Testing;

/// <summary>
/// A child process whose stdout is followed line by line, drained all along (a child blocked on
/// a full pipe would stall), and which is SIGKILLed when disposed: no flush, no close, nothing
/// stored on the way out.
/// </summary>
public sealed class FollowedProcess : IAsyncDisposable
{
    private static readonly TimeSpan LineTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly Task<string> _stderr;
    private readonly Task _stdout;
    private readonly SemaphoreSlim _changed = new(0);
    private bool _disposed;

    private FollowedProcess(Process process)
    {
        _process = process;
        _stderr = process.StandardError.ReadToEndAsync();
        _stdout = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (_lines)
                {
                    _lines.Add(line);
                }

                _changed.Release();
            }

            _changed.Release();
        });
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public bool HasExited => _process.HasExited;

    /// <param name="input">Give the child a standard input to write to (<see cref="SendLineAsync"/>).</param>
    public static FollowedProcess Start(string program, IEnumerable<string> arguments, bool input = false)
    {
        var info = new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = input };
        return new FollowedProcess(Process.Start(info) ?? throw new InvalidOperationException($"{program} did not start"));
    }

    /// <summary>Writes one line to the child's standard input (started with <c>input</c>).</summary>
    public async Task SendLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync(Ct);
    }

    /// <summary>Closes the child's standard input and waits (up to 60 s) for it to end by itself; its exit code.</summary>
    public async Task<int> EndInputAndWaitAsync()
    {
        _process.StandardInput.Close();
        await _process.WaitForExitAsync(Ct).WaitAsync(LineTimeout, Ct);
        await _stdout.WaitAsync(LineTimeout, Ct);
        return _process.ExitCode;
    }

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for a line after the first <paramref name="from"/>
    /// that <paramref name="match"/> takes; its number, or -1 when none came before the timeout
    /// or the end of the child's output.
    /// </summary>
    public async Task<int> WaitForLineAsync(int from, Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            lock (_lines)
            {
                for (var i = from; i < _lines.Count; i++)
                {
                    if (match(_lines[i]))
                    {
                        return i;
                    }
                }
            }

            if (_stdout.IsCompleted || deadline.Elapsed > timeout)
            {
                return -1;
            }

            await _changed.WaitAsync(TimeSpan.FromMilliseconds(100), Ct);
        }
    }

    /// <summary>Every line so far, and the child's stderr once it has ended: for a failure message.</summary>
    public string Output()
        => string.Join('\n', Lines("")) + "\n" + (_stderr.IsCompleted ? _stderr.Result : "(stderr: still running)");

    /// <summary>Waits (up to 60 s) for a line starting with <paramref name="prefix"/> and returns the rest of it; fails with the child's output if it ends first.</summary>
    public async Task<string> WaitForLineAsync(string prefix)
    {
        if (await TryWaitForLineAsync(prefix, LineTimeout) is { } rest)
        {
            return rest;
        }

        // The child's stderr is complete only once it has ended.
        var stderr = _stderr.IsCompleted ? await _stderr : "(still running)";
        Assert.Fail($"no '{prefix}' line from {_process.StartInfo.FileName} in {LineTimeout.TotalSeconds} s: {string.Join('\n', Lines(""))}\n{stderr}");
        return "";
    }

    /// <summary>Waits up to <paramref name="timeout"/> for a line starting with <paramref name="prefix"/>; the rest of it, or null.</summary>
    public async Task<string?> TryWaitForLineAsync(string prefix, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (Lines(prefix) is [var rest, ..])
            {
                return rest;
            }

            if (_stdout.IsCompleted || deadline.Elapsed > timeout)
            {
                return null;
            }

            await _changed.WaitAsync(TimeSpan.FromMilliseconds(100), Ct);
        }
    }

    /// <summary>The lines from the last one that starts with <paramref name="prefix"/> on (all of them when none does).</summary>
    public IReadOnlyList<string> LinesFromLast(string prefix)
    {
        lock (_lines)
        {
            var last = _lines.FindLastIndex(l => l.StartsWith(prefix, StringComparison.Ordinal));
            return [.. _lines.Skip(Math.Max(0, last))];
        }
    }

    /// <summary>Fails with the child's stderr if it has ended by itself.</summary>
    public async Task AssertRunningAsync()
    {
        if (_process.HasExited)
        {
            Assert.Fail($"{_process.StartInfo.FileName} ended by itself: {await _stderr}");
        }
    }

    /// <summary>The lines seen so far that start with <paramref name="prefix"/>, without it.</summary>
    public IReadOnlyList<string> Lines(string prefix)
    {
        lock (_lines)
        {
            return [.. _lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => l[prefix.Length..])];
        }
    }

    /// <summary>SIGKILLs the child (if it still runs), waits for it to end and for its stdout to be read to the end.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        // A descendant that inherited the child's stdout would keep it open past the child's
        // end; fail rather than wait for ever.
        await _process.WaitForExitAsync(Ct).WaitAsync(LineTimeout, Ct);
        await _stdout.WaitAsync(LineTimeout, Ct);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        await KillAsync();
        _disposed = true;
        _process.Dispose();
        _changed.Dispose();
    }
}
