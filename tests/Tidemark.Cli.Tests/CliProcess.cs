using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Tidemark.Cli.Tests;

/// <summary>
/// A long-running <c>tidemark</c> process (<c>nbd serve</c>) that a test stops with a signal, as
/// a service manager does; killed on dispose if it is still running.
/// </summary>
internal sealed class CliProcess : IAsyncDisposable
{
    public const int SIGHUP = 1;
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;

    private readonly Process _process;
    private readonly StringBuilder _stdoutSoFar = new();
    private readonly Task<string> _stdout;
    private readonly Task<string> _stderr;

    private CliProcess(Process process)
    {
        _process = process;
        _stdout = Task.Run(async () =>
        {
            var buffer = new char[4096];
            int n;
            while ((n = await process.StandardOutput.ReadAsync(buffer)) > 0)
            {
                lock (_stdoutSoFar)
                {
                    _stdoutSoFar.Append(buffer, 0, n);
                }
            }

            lock (_stdoutSoFar)
            {
                return _stdoutSoFar.ToString();
            }
        });
        _stderr = process.StandardError.ReadToEndAsync();
    }

    /// <summary>The process id (the daemon names it in its refusal of a second daemon).</summary>
    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public static async Task<CliProcess> StartAsync(params string[] args)
    {
        // A test run started under nohup (or by a service manager) hands its children SIGHUP
        // ignored, and an ignored signal stays ignored across exec, as it should: tidemark then
        // rightly keeps running on SIGHUP. env(1) restores the default disposition, so the
        // program under test sees every signal the test sends (env execs it: the pid is tidemark's).
        var info = await TidemarkProgram.StartInfoAsync(args);
        info.ArgumentList.Insert(0, info.FileName);
        info.ArgumentList.Insert(0, "--default-signal=HUP,INT,TERM");
        info.FileName = "/usr/bin/env";
        return new(Process.Start(info) ?? throw new InvalidOperationException("tidemark did not start"));
    }

    /// <summary>Sends <paramref name="signal"/> and waits for the process to exit by itself.</summary>
    public async Task<CliRun> StopAsync(int signal = SIGTERM)
    {
        if (!_process.HasExited && NativeMethods.kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        // Closing an image stores its bitmaps and syncs it: on a loaded host that can take a while.
        return await WaitForExitAsync(TimeSpan.FromMinutes(2));
    }

    /// <summary>Waits until the process has printed <paramref name="text"/>; fails if it ends first or after <paramref name="timeout"/>.</summary>
    public async Task WaitForStdoutAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_stdoutSoFar)
            {
                if (_stdoutSoFar.ToString().Contains(text, StringComparison.Ordinal))
                {
                    return;
                }
            }

            if (_stdout.IsCompleted || DateTime.UtcNow > deadline)
            {
                Assert.Fail($"tidemark did not print '{text}': {await _stdout.WaitAsync(TimeSpan.FromSeconds(5))}{await _stderr.WaitAsync(TimeSpan.FromSeconds(5))}");
            }

            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>Waits for the process to end on its own; fails after <paramref name="timeout"/>.</summary>
    public async Task<CliRun> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return new CliRun(_process.ExitCode, await _stdout, await _stderr);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        internal static extern int kill(int pid, int sig);
    }
}
