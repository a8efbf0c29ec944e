using System.Xml;
using System.Xml.Linq;

namespace Tidemark.Formats.Xml;

/// <summary>
/// Reads untrusted XML text into a tree with line information, safely: no DTD (a document with a
/// <c>&lt;!DOCTYPE&gt;</c> is refused, so no entity is ever declared or expanded), no external
/// resolution, a size cap checked before anything is parsed, and an attribute cap and a nesting
/// cap checked before the tree is built. The work is linear in the text and cancellable.
/// </summary>
public static class XmlDocumentLoader
{
    /// <summary>
    /// The largest document accepted, in characters: 10 MiB, virsh's own cap for an XML file
    /// (<c>VSH_MAX_XML_FILE</c>). A checkpoint with an embedded domain is a few KiB; the cap only
    /// bounds what a hostile input can make us allocate.
    /// </summary>
    public const int MaxDocumentChars = 10 * 1024 * 1024;

    /// <summary>
    /// The deepest element nesting accepted: 256, libxml2's own limit without XML_PARSE_HUGE
    /// (libvirt parses with it), so libvirt refuses anything deeper too. Real documents nest
    /// about ten levels (a backing chain adds two per layer); the cap keeps every later tree
    /// walk shallow.
    /// </summary>
    public const int MaxDepth = 256;

    /// <summary>
    /// The most attributes one element may have: 1024. The widest element of libvirt's documents,
    /// a disk's <c>&lt;driver&gt;</c>, has under twenty, and a schema-valid element never repeats
    /// one; the cap keeps .NET's reader, which slows down faster than linearly with the
    /// attributes of a single element, linear over the whole document (see <see cref="StartTagScan"/>).
    /// </summary>
    public const int MaxAttributesPerElement = 1024;

    // The cancellation token is looked at once per this many nodes of the streaming pass.
    private const int CheckEveryNodes = 4096;

    /// <summary>Parses <paramref name="text"/>; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="DocumentException">Too large, too deep, an element with too many
    /// attributes, not well-formed, or with a DTD.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static XDocument Load(string text, string source = "(document)", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(text);
        cancellationToken.ThrowIfCancellationRequested();
        if (text.Length > MaxDocumentChars)
        {
            throw new DocumentException(
                DocumentErrorReason.DocumentTooLarge,
                $"document '{source}' is {text.Length} characters, more than the limit of {MaxDocumentChars}");
        }

        var settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit,
            XmlResolver = null,
            MaxCharactersInDocument = MaxDocumentChars,
            MaxCharactersFromEntities = 0,
            IgnoreComments = true,
            IgnoreProcessingInstructions = true,
            CloseInput = true,
        };
        StartTagScan.Check(text, MaxAttributesPerElement, source, cancellationToken);
        try
        {
            // First a streaming pass that stops at the depth cap, before any tree is built:
            // building a very deep tree is itself slow.
            using (var scan = XmlReader.Create(new StringReader(text), settings))
            {
                var nodes = 0;
                while (scan.Read())
                {
                    if (++nodes % CheckEveryNodes == 0)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                    }

                    if (scan.NodeType == XmlNodeType.Element && scan.Depth >= MaxDepth)
                    {
                        var at = (IXmlLineInfo)scan;
                        throw new DocumentException(
                            DocumentErrorReason.MalformedXml,
                            $"failed to parse xml document '{source}': line {at.LineNumber}, column {at.LinePosition}: elements nest deeper than {MaxDepth} levels");
                    }
                }
            }

            using var reader = XmlReader.Create(new StringReader(text), settings);
            return XDocument.Load(reader, LoadOptions.SetLineInfo | LoadOptions.PreserveWhitespace);
        }
        catch (XmlException e) when (e.Message.Contains("DTD", StringComparison.Ordinal))
        {
            // The exception carries no position for this case: find the declaration in the text.
            var (line, column) = PositionOf(text, text.IndexOf("<!DOCTYPE", StringComparison.Ordinal));
            throw new DocumentException(
                DocumentErrorReason.DtdProhibited,
                $"document '{source}' has a document type declaration (line {line}, column {column}); DTDs and entity declarations are refused",
                [],
                e);
        }
        catch (XmlException e)
        {
            throw new DocumentException(
                DocumentErrorReason.MalformedXml,
                $"failed to parse xml document '{source}': line {e.LineNumber}, column {e.LinePosition}: {FirstSentence(e.Message)}",
                [],
                e);
        }
    }

    /// <summary>The kind of document, told by its root element name.</summary>
    public static DocumentKind KindOf(XDocument document)
    {
        ArgumentNullException.ThrowIfNull(document);
        var root = document.Root!;
        if (root.Name.Namespace != XNamespace.None)
        {
            return DocumentKind.Unknown;
        }

        return root.Name.LocalName switch
        {
            "domaincheckpoint" => DocumentKind.Checkpoint,
            "domainbackup" => DocumentKind.Backup,
            "domain" => DocumentKind.Domain,
            _ => DocumentKind.Unknown,
        };
    }

    /// <summary>Refuses a document whose root element is not <paramref name="expected"/>.</summary>
    public static XElement RequireRoot(XDocument document, string expected)
    {
        ArgumentNullException.ThrowIfNull(document);
        var root = document.Root!;
        if (root.Name != XName.Get(expected))
        {
            throw new DocumentException(
                DocumentErrorReason.UnexpectedRoot,
                $"expecting root element of '{expected}', not '{root.Name.LocalName}'");
        }

        return root;
    }

    private static (int Line, int Column) PositionOf(string text, int index)
    {
        if (index < 0)
        {
            return (1, 1);
        }

        var lineStart = index == 0 ? 0 : text.LastIndexOf('\n', index - 1) + 1;
        return (1 + text.AsSpan(0, index).Count('\n'), index - lineStart + 1);
    }

    // .NET's XmlException message repeats the position ("Line 3, position 7."); the caller
    // already states it, so keep only the description.
    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Line ", StringComparison.Ordinal);
        return (cut > 0 ? message[..cut] : message).TrimEnd();
    }
}

/// <summary>The documents Tidemark reads, told apart by their root element.</summary>
public enum DocumentKind
{
    /// <summary>A root element Tidemark has no schema for.</summary>
    Unknown,

    /// <summary><c>&lt;domaincheckpoint&gt;</c>.</summary>
    Checkpoint,

    /// <summary><c>&lt;domainbackup&gt;</c>.</summary>
    Backup,

    /// <summary><c>&lt;domain&gt;</c>.</summary>
    Domain,
}
