namespace Tidemark.Formats;

/// <summary>
/// The one error of the document layer: a <c>&lt;domaincheckpoint&gt;</c>, <c>&lt;domainbackup&gt;</c>
/// or <c>&lt;domain&gt;</c> that cannot be read, is invalid, or does not fit its domain. The
/// message is libvirt's: <c>&lt;code prefix&gt;: &lt;detail&gt;</c> (spec §2.6, §9).
/// </summary>
public sealed class DocumentException : Exception
{
    public DocumentException(DocumentErrorReason reason, string detail)
        : this(reason, detail, [])
    {
    }

    public DocumentException(DocumentErrorReason reason, string detail, IReadOnlyList<string> problems, Exception? innerException = null)
        : base(Compose(reason, detail, problems), innerException)
    {
        Reason = reason;
        Detail = detail;
        Problems = problems;
    }

    /// <summary>Why the document was refused.</summary>
    public DocumentErrorReason Reason { get; }

    /// <summary>libvirt's error code for <see cref="Reason"/>.</summary>
    public LibvirtErrorCode Code => DocumentErrorReasons.CodeOf(Reason);

    /// <summary>The detail text, without the code prefix.</summary>
    public string Detail { get; }

    /// <summary>For schema violations: one line per problem, each naming the element or attribute and its line.</summary>
    public IReadOnlyList<string> Problems { get; }

    private static string Compose(DocumentErrorReason reason, string detail, IReadOnlyList<string> problems)
    {
        var head = $"{LibvirtErrorPrefix.Of(DocumentErrorReasons.CodeOf(reason))}: {detail}";
        return problems.Count == 0 ? head : head + "\n" + string.Join('\n', problems);
    }
}
