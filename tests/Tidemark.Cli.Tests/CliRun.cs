using System.Diagnostics;

namespace Tidemark.Cli.Tests;

/// <summary>One run of the native <c>tidemark</c> program (<see cref="TidemarkProgram"/>) to its end and what it printed.</summary>
internal sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static Task<CliRun> RunAsync(params string[] args) => RunAsync(args, workingDirectory: null);

    /// <summary>Runs the program in <paramref name="workingDirectory"/> (relative paths are taken from there).</summary>
    public static Task<CliRun> RunAsync(string[] args, string? workingDirectory) => RunAsync(args, workingDirectory, environment: null);

    /// <summary>Runs the program with <paramref name="environment"/> added to (or, for null values, removed from) its environment.</summary>
    public static async Task<CliRun> RunAsync(string[] args, string? workingDirectory, IReadOnlyDictionary<string, string?>? environment)
    {
        var start = await TidemarkProgram.StartInfoAsync(args);
        if (workingDirectory is not null)
        {
            start.WorkingDirectory = workingDirectory;
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
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
