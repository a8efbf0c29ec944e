using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The bars of <c>backup run</c> and <c>restore</c>: drawn only when stdout is a terminal (a
/// pseudo-terminal from script(1) here, TERM=xterm) and neither <c>--quiet</c> nor
/// <c>--json</c> is given; redirected, each command prints exactly its plain lines (what the
/// other tests read); on the terminal the same lines still come, below the bars.
/// </summary>
public sealed class ProgressBarTests
{
    /// <summary>
    /// Spectre.Console's live display hides the cursor while it draws (DECTCEM off). The .NET
    /// console itself writes the keypad mode sequences on any terminal, bars or not.
    /// </summary>
    private const string LiveDisplay = "\u001b[?25l";

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task BackupRunAndRestore_OnATerminal_DrawABarPerDisk_QuietAndRedirectedDoNot()
    {
        Peer.Require("script");
        await using var host = await DaemonHost.StartAsync("cli-bars");
        await host.GuestWriteAsync("write -P 0x41 0 24M", "write -P 0x42 100M 8M");
        var capture = host.Directory.File("p0.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", host.Image, capture);

        var run = await OnTerminalAsync("backup", "run", "vm", "--repo", host.Repo, "-c", host.Uri);
        Assert.Contains("vda: full (no previous backup in the repository)", run, StringComparison.Ordinal);
        AssertBar(run);

        var restored = host.Directory.File("r.raw");
        var restore = await OnTerminalAsync("restore", "--repo", host.Repo, "--domain", "vm", "--output", restored);
        AssertBar(restore);
        Assert.Contains($"restored disk vda of domain 'vm' at ", restore, StringComparison.Ordinal);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", restored, capture])).ExitCode);

        var quiet = await OnTerminalAsync("restore", "--repo", host.Repo, "--domain", "vm", "--output", restored, "--force", "--quiet");
        Assert.DoesNotContain(LiveDisplay, quiet, StringComparison.Ordinal);
        Assert.DoesNotContain("%", quiet, StringComparison.Ordinal);
        Assert.Matches($"restored disk vda of domain 'vm' at tidemark\\.[0-9a-f]+\\.0 to {Regex.Escape(restored)}\r\n", quiet);

        var json = await OnTerminalAsync("restore", "--repo", host.Repo, "--domain", "vm", "--output", restored, "--force", "--json");
        Assert.DoesNotContain(LiveDisplay, json, StringComparison.Ordinal);
        Assert.Contains("\"checkpoint\": \"tidemark.", json, StringComparison.Ordinal);

        // Redirected (no terminal): only the plain line.
        var plain = await CliRun.RunAsync("restore", "--repo", host.Repo, "--domain", "vm", "--output", restored, "--force");
        Assert.Equal(0, plain.ExitCode);
        Assert.Matches($"^restored disk vda of domain 'vm' at tidemark\\.[0-9a-f]+\\.0 to {Regex.Escape(restored)}\n$", plain.Stdout);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", restored, capture])).ExitCode);
    }

    /// <summary>A bar for disk vda that reached its end: the live display's escapes, the disk's name and 100 %.</summary>
    private static void AssertBar(string output)
    {
        Assert.Contains(LiveDisplay, output, StringComparison.Ordinal);
        Assert.Matches("vda[^\n]*100%", output);
    }

    /// <summary>
    /// Runs the native program with a pseudo-terminal as its stdout and stdin (script(1)), in an
    /// environment of its own: TERM=xterm, and none of the CI variables under which
    /// Spectre.Console draws no live display; returns what it wrote to the terminal.
    /// </summary>
    private static async Task<string> OnTerminalAsync(params string[] args)
    {
        var program = await TidemarkProgram.PathAsync();
        var command = string.Join(' ', new[] { "env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm", "LANG=C.UTF-8", program }.Concat(args).Select(Quote));
        var result = await Peer.RunAsync("script", ["--quiet", "--return", "--command", command, "/dev/null"], stdin: "", timeout: TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, $"tidemark {string.Join(' ', args)} on a terminal: {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result.Stdout;
    }

    private static string Quote(string argument) => "'" + argument.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
