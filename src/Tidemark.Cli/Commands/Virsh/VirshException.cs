namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// A virsh command that failed: each of <see cref="Lines"/> is printed as one <c>error: …</c>
/// line, as virsh prints its own complaint and then libvirt's error (libvirt's vshError and
/// vshReportError). <see cref="Output"/> is what the command printed before failing (an event
/// loop's count after a timeout).
/// </summary>
internal sealed class VirshException : Exception
{
    public VirshException(IReadOnlyList<string> lines, string output = "")
        : base(string.Join("; ", lines))
    {
        Lines = lines;
        Output = output;
    }

    public VirshException(string message)
        : this([message])
    {
    }

    public VirshException()
        : this("command failed")
    {
    }

    public VirshException(string message, Exception innerException)
        : base(message, innerException)
    {
        Lines = [message];
        Output = "";
    }

    /// <summary>The error lines, without their <c>error: </c> prefix.</summary>
    public IReadOnlyList<string> Lines { get; }

    /// <summary>
    /// virsh refused the command line before running the command (a required option missing):
    /// then not even the empty line that ends a command's output is printed.
    /// </summary>
    public bool BeforeRun { get; init; }

    /// <summary>Standard output written before the failure.</summary>
    public string Output { get; }
}
