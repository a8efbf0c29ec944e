namespace Tidemark.Cli;

/// <summary>
/// A user error: bad input, a missing file, a refused operation. It is printed as one
/// <c>error: …</c> line and the process exits with <see cref="ExitCode"/>; anything else that
/// escapes a command is a bug and keeps its stack trace.
/// </summary>
public sealed class CliException : Exception
{
    public CliException(string message, int exitCode = 1)
        : base(message)
    {
        ExitCode = exitCode;
    }

    public CliException(string message, Exception innerException, int exitCode = 1)
        : base(message, innerException)
    {
        ExitCode = exitCode;
    }

    public CliException()
        : this("command failed")
    {
    }

    public CliException(string message)
        : this(message, 1)
    {
    }

    public CliException(string message, Exception innerException)
        : this(message, innerException, 1)
    {
    }

    /// <summary>The process exit status for this error.</summary>
    public int ExitCode { get; }
}
