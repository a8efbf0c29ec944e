using System.Diagnostics;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The program users run: the Native AOT executable that <c>./tidemark</c> builds into
/// <c>artifacts/cli/</c>. Every CLI test runs it as a separate process, so the tests see what
/// users see (trimming, start-up, exit codes, signals), not the JIT build of the same code. The
/// first test to ask builds it once per run by running <c>./tidemark --version</c>, which
/// publishes only when a source is newer than the executable.
/// </summary>
internal static class TidemarkProgram
{
    private static readonly Lazy<Task<string>> Executable = new(BuildAsync);

    /// <summary>The path of the native executable, built first if needed.</summary>
    public static Task<string> PathAsync() => Executable.Value;

    /// <summary>A start for <c>tidemark ARGS</c> with stdout and stderr redirected.</summary>
    public static async Task<ProcessStartInfo> StartInfoAsync(IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(await Executable.Value)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return info;
    }

    private static async Task<string> BuildAsync()
    {
        var script = Path.Combine(Repository.Root, "tidemark");
        var info = new ProcessStartInfo(script, ["--version"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {script}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(15));
        await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"./tidemark --version exited {process.ExitCode}; the native build failed:\n{await stdout}{await stderr}");
        }

        var executable = Path.Combine(Repository.Root, "artifacts", "cli", "tidemark");
        return File.Exists(executable)
            ? executable
            : throw new InvalidOperationException($"./tidemark built no native executable at {executable} (Native AOT needs linux-x64 or linux-arm64)");
    }
}
