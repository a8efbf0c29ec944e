namespace Tidemark.Cli;

/// <summary>Where a command writes: its normal output and its error lines.</summary>
public sealed record CliConsole(TextWriter Out, TextWriter Error)
{
    /// <summary>Output goes to the process's own stdout, and that is a terminal: live progress bars may be drawn.</summary>
    public bool IsTerminal => ReferenceEquals(Out, Console.Out) && !Console.IsOutputRedirected;
}
