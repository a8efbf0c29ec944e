namespace Tidemark.Cli;

/// <summary>Where a command writes: its normal output and its error lines.</summary>
public sealed record CliConsole(TextWriter Out, TextWriter Error);
