using System.Diagnostics;
using System.Globalization;

namespace Tidemark.Bench;

/// <summary>
/// A peer server process a benchmark measures Tidemark against (qemu-nbd): started with its
/// output drained, its CPU time readable while it serves, killed on dispose. Shared by the NBD
/// and engine benchmarks (linked into both projects).
/// </summary>
internal sealed class PeerServer : IAsyncDisposable
{
    private readonly Process _process;

    private PeerServer(Process process)
    {
        _process = process;

        // Both pipes are drained for the server's whole life: a full pipe would stall it.
        _ = process.StandardOutput.ReadToEndAsync();
        Error = process.StandardError.ReadToEndAsync();
    }

    /// <summary>Everything the server wrote to standard error, once it has exited.</summary>
    public Task<string> Error { get; }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Starts <paramref name="program"/> with <paramref name="args"/>; it runs until disposed.</summary>
    public static PeerServer Start(string program, params string[] args)
        => new(Process.Start(PeerProgram.StartInfo(program, args)) ?? throw new InvalidOperationException($"cannot start {program}"));

    /// <summary>User + system CPU seconds of the process so far (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).</summary>
    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");

        // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
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
}
