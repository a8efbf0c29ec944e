using System.Diagnostics;

namespace Tidemark.Cli.Tests;

/// <summary>One run of the native <c>tidemark</c> program (<see cref="TidemarkProgram"/>) to its end and what it printed.</summary>
internal sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static Task<CliRun> RunAsync(params string[] args) => RunAsync(args, workingDirectory: null);

    /// <summary>Runs the program in <paramref name="workingDirectory"/> (relative paths are taken from there).</summary>
    public static async Task<CliRun> RunAsync(string[] args, string? workingDirectory)
    {
        var start = await TidemarkProgram.StartInfoAsync(args);
        if (workingDirectory is not null)
        {
            start.WorkingDirectory = workingDirectory;
        }

        using var process = Process.Start(start)
            ?? throw new InvalidOperationException("tidemark did not start");
        var token = TestContext.Current.CancellationToken;
        var stdout = process.StandardOutput.ReadToEndAsync(token);
        var stderr = process.StandardError.ReadToEndAsync(token);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"tidemark {string.Join(' ', args)} did not finish in time");
        }

        return new CliRun(process.ExitCode, await stdout, await stderr);
    }
}
