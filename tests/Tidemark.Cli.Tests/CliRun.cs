using System.Diagnostics;

namespace Tidemark.Cli.Tests;

/// <summary>One run of the native <c>tidemark</c> program (<see cref="TidemarkProgram"/>) to its end and what it printed.</summary>
internal sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static async Task<CliRun> RunAsync(params string[] args)
    {
        using var process = Process.Start(await TidemarkProgram.StartInfoAsync(args))
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
