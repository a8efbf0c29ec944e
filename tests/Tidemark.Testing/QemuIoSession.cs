using System.Diagnostics;
using System.Text;

namespace Tidemark.Testing;

/// <summary>
/// One qemu-io process kept open on an NBD export, fed commands one at a time: a guest whose
/// connection outlives single commands. Opened with QEMU's <c>reconnect-delay</c>, it is the
/// guest that rides out a server restart, as a VM's NBD drive does: requests made while the
/// server is gone wait for the reconnection and are then sent again.
/// </summary>
public sealed class QemuIoSession : IAsyncDisposable
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(90);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly StringBuilder _stderr = new();
    private readonly SemaphoreSlim _changed = new(0);
    private readonly Task _stdout;
    private int _seen;

    private QemuIoSession(Process process)
    {
        _process = process;
        _stdout = Task.Run(async () =>
        {
            // The prompt has no newline, so each reply reads as "qemu-io> wrote …".
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
        process.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr)
            {
                _stderr.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
    }

    /// <summary>
    /// Opens <c>nbd+unix:///EXPORT?socket=SOCKET</c> as the raw protocol node (no format probing).
    /// </summary>
    /// <param name="reconnectDelay">QEMU's <c>reconnect-delay</c>: seconds a request waits for a lost server to come back; 0 fails it at once.</param>
    public static QemuIoSession OpenUnix(string socket, string export, int reconnectDelay)
    {
        var options = $"driver=nbd,server.type=unix,server.path={socket.Replace(",", ",,", StringComparison.Ordinal)},export={export},reconnect-delay={reconnectDelay}";

        // stdbuf makes qemu-io's output line-buffered (a pipe is fully buffered) and execs it.
        var info = new ProcessStartInfo("stdbuf", ["-oL", Peer.Require("qemu-io"), "--image-opts", options])
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        return new QemuIoSession(Process.Start(info) ?? throw new InvalidOperationException("qemu-io did not start"));
    }

    /// <summary>Sends one command without waiting for its reply (<see cref="WaitForReplyAsync"/> does).</summary>
    public async Task SendAsync(string command)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>
    /// Waits for the next reply line, after those already seen, that contains
    /// <paramref name="expected"/>; fails with qemu-io's output on a line naming a failure, on
    /// its exit, or after 90 s.
    /// </summary>
    public async Task WaitForReplyAsync(string expected)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            lock (_lines)
            {
                for (; _seen < _lines.Count; _seen++)
                {
                    var line = _lines[_seen];
                    if (line.Contains(expected, StringComparison.Ordinal))
                    {
                        _seen++;
                        return;
                    }

                    if (line.Contains("failed", StringComparison.OrdinalIgnoreCase) || line.Contains("Pattern verification", StringComparison.Ordinal))
                    {
                        Assert.Fail($"qemu-io: {line}\n{Output()}");
                    }
                }
            }

            if (_stdout.IsCompleted || deadline.Elapsed > ReplyTimeout)
            {
                Assert.Fail($"no reply containing '{expected}' from qemu-io{(_stdout.IsCompleted ? " (it exited)" : $" in {ReplyTimeout.TotalSeconds} s")}:\n{Output()}");
            }

            await _changed.WaitAsync(TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>Sends <paramref name="command"/> and waits for a reply containing <paramref name="expected"/>.</summary>
    public async Task RunAsync(string command, string expected)
    {
        await SendAsync(command);
        await WaitForReplyAsync(expected);
    }

    /// <summary>Ends qemu-io with its own <c>quit</c>, which flushes and closes the connection; fails if it does not exit cleanly.</summary>
    public async Task QuitAsync()
    {
        await SendAsync("quit");
        _process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(ReplyTimeout);
        await _process.WaitForExitAsync(timeout.Token);
        await _stdout;
        Assert.True(_process.ExitCode == 0, $"qemu-io exited with {_process.ExitCode}:\n{Output()}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private string Output()
    {
        lock (_lines)
        {
            lock (_stderr)
            {
                return string.Join('\n', _lines) + "\n" + _stderr;
            }
        }
    }
}
