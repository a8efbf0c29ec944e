using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats;

/// <summary>
/// Checks a document completely, told by its root element, as <c>virt-xml-validate</c> plus
/// libvirt's own parser would: the schema rules, then every value the parser refuses.
/// </summary>
public static class DocumentValidator
{
    /// <summary>Validates <paramref name="xml"/> and returns its kind.</summary>
    /// <remarks>
    /// A checkpoint is read in create mode (a redefinition additionally needs name and
    /// creationTime, which the schema leaves optional). A <c>&lt;domain&gt;</c> is checked only in
    /// the part Tidemark models (see <see cref="DomainSchema"/>).
    /// </remarks>
    /// <exception cref="DocumentException">The document is refused; the message says why.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the text was parsed.</exception>
    public static DocumentKind Validate(string xml, string source = "(document)", CancellationToken cancellationToken = default)
    {
        var document = XmlDocumentLoader.Load(xml, source, cancellationToken);
        var kind = XmlDocumentLoader.KindOf(document);
        switch (kind)
        {
            case DocumentKind.Checkpoint:
                CheckpointParser.Parse(document.Root!, CheckpointParseMode.Create);
                break;
            case DocumentKind.Backup:
                BackupParser.Parse(document.Root!);
                break;
            case DocumentKind.Domain:
                DomainParser.Parse(document.Root!);
                break;
            default:
                throw new DocumentException(
                    DocumentErrorReason.UnexpectedRoot,
                    $"unknown root element '{document.Root!.Name.LocalName}': expecting 'domaincheckpoint', 'domainbackup' or 'domain'");
        }

        return kind;
    }
}
