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
    /// it said "started"; returns how long it ran.
    /// </summary>
    public static async Task<TimeSpan> RunAsync(string[] arguments, TimeSpan? killAfter)
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
            Assert.True(process.ExitCode == 0, $"{arguments[0]} failed: {await stderr}");
            return clock.Elapsed;
        }

        try
        {
            await Task.Delay(killAfter.Value, timeout.Token);
        }
        finally
        {
            // SIGKILL: no finalizers, no close, no flush.
            process.Kill();
            await process.WaitForExitAsync(CancellationToken.None);
        }

        return clock.Elapsed;
    }
}
