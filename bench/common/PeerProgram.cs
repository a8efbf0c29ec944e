using System.Diagnostics;

namespace Tidemark.Bench;

/// <summary>
/// Runs a peer program (qemu-img, qemu-io, nbdcopy, nbdinfo, fio) to its end, both output pipes
/// drained. Shared by the NBD and engine benchmarks (linked into both projects).
/// </summary>
internal static class PeerProgram
{
    /// <summary>Both output pipes redirected, the arguments passed as they are (no shell).</summary>
    public static ProcessStartInfo StartInfo(string program, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return info;
    }

    /// <summary>The exit status and everything written to standard output and standard error.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(string program, params string[] args)
    {
        using var process = Process.Start(StartInfo(program, args)) ?? throw new InvalidOperationException($"cannot start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output, await error);
    }
}
