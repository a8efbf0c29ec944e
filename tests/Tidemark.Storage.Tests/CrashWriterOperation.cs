using System.Diagnostics;

namespace Tidemark.Storage.Tests;

/// <summary>
/// One image operation of <c>Tidemark.Storage.CrashWriter</c> (commit, rebase, shrink …) in a
/// child process, run to its end or SIGKILLed part way, for the kill trials of those operations.
/// </summary>
internal static class CrashWriterOperation
{
    /// <summary>
    /// Runs the operation to its end (null <paramref name="killAfter"/>) or kills it that long after
    /// it said "started"; returns how long it ran. The lines it printed after "started" are added
    /// to <paramref name="output"/> when given. With <paramref name="countFrom"/>, the kill delay
    /// counts from the moment it first returns true (polled without pause from "started" on), so
    /// that a kill can land within a short step the operation takes late, such as its first
    /// write to the file.
    /// </summary>
    public static async Task<TimeSpan> RunAsync(string[] arguments, TimeSpan? killAfter, List<string>? output = null, Func<bool>? countFrom = null)
    {
        var writer = Path.Combine(AppContext.BaseDirectory, "Tidemark.Storage.CrashWriter.dll");
        var info = new ProcessStartInfo("dotnet", [writer, .. arguments]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Assert.Equal("started", await process.StandardOutput.ReadLineAsync(timeout.Token));
        var clock = Stopwatch.StartNew();
        if (killAfter is null)
        {
            await process.WaitForExitAsync(timeout.Token);
            var elapsed = clock.Elapsed;
            Assert.True(process.ExitCode == 0, $"{arguments[0]} failed: {await stderr}");
            await CollectAsync(process, output);
            return elapsed;
        }

        try
        {
            if (countFrom is not null)
            {
                while (!countFrom() && !process.HasExited && !timeout.IsCancellationRequested)
                {
                    Thread.Yield();
                }

                // Task.Delay waits a millisecond at least; these delays are shorter.
                var since = Stopwatch.StartNew();
                while (since.Elapsed < killAfter.Value)
                {
                    Thread.SpinWait(20);
                }
            }
            else
            {
                await Task.Delay(killAfter.Value, timeout.Token);
            }
        }
        finally
        {
            // SIGKILL: no finalizers, no close, no flush.
            process.Kill();
            await process.WaitForExitAsync(CancellationToken.None);
        }

        var ran = clock.Elapsed;
        await CollectAsync(process, output);
        return ran;
    }

    private static async Task CollectAsync(Process process, List<string>? output)
    {
        var rest = await process.StandardOutput.ReadToEndAsync();
        output?.AddRange(rest.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
