using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// Reads a <c>&lt;domaincheckpoint&gt;</c> (spec §2.2): schema check first, as libvirt always
/// does, then the fields the mode reads. No domain is needed; alignment is a separate step.
/// </summary>
public static class CheckpointParser
{
    /// <summary>
    /// Parses <paramref name="xml"/>. In <see cref="CheckpointParseMode.Create"/> mode, a non-zero
    /// <paramref name="creationTime"/> runs the create-mode post-parse step
    /// (<see cref="CheckpointDefinition.WithCreationDefaults"/>); 0 leaves the definition as read.
    /// </summary>
    /// <exception cref="DocumentException">Malformed XML, another root, a schema violation, or a
    /// redefinition without name or creationTime.</exception>
    public static CheckpointDefinition Parse(string xml, CheckpointParseMode mode, long creationTime = 0, string source = "(domain_checkpoint)")
    {
        var document = XmlDocumentLoader.Load(xml, source);
        return Parse(XmlDocumentLoader.RequireRoot(document, "domaincheckpoint"), mode, creationTime);
    }

    /// <summary>Parses a <c>&lt;domaincheckpoint&gt;</c> element; see <see cref="Parse(string, CheckpointParseMode, long, string)"/>.</summary>
    public static CheckpointDefinition Parse(XElement root, CheckpointParseMode mode, long creationTime = 0)
    {
        ArgumentNullException.ThrowIfNull(root);
        Validate(root);

        // From here the schema guarantees the shape: at most one of each child, names that
        // match the patterns, a name on every disk.
        var name = NonEmpty(root.Element("name")?.Value);
        if (name is null && mode == CheckpointParseMode.Redefine)
        {
            throw new DocumentException(DocumentErrorReason.RedefineWithoutName, "a redefined checkpoint must have a name");
        }

        var description = NonEmpty(root.Element("description")?.Value);
        var disks = root.Elements("disks").Elements().Select(ParseDisk).ToList();

        if (mode == CheckpointParseMode.Create)
        {
            var created = new CheckpointDefinition(name, description, null, 0, disks);
            return creationTime == 0 ? created : created.WithCreationDefaults(creationTime);
        }

        // libvirt reads creationTime as a signed 64-bit number: digits beyond that range pass
        // the schema (unsignedLong) but not the parser.
        if (!long.TryParse(root.Element("creationTime")?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var time))
        {
            throw new DocumentException(DocumentErrorReason.RedefineWithoutCreationTime, "missing creationTime from existing checkpoint");
        }

        var parent = NonEmpty(root.Element("parent")?.Element("name")?.Value);
        var domain = root.Element("domain") is { } domainElement ? DomainParser.Parse(domainElement) : null;
        return new CheckpointDefinition(name, description, parent, time, disks, domain);
    }

    /// <summary>The schema check alone (what <c>virt-xml-validate</c> does).</summary>
    /// <exception cref="DocumentException">With reason <see cref="DocumentErrorReason.SchemaViolation"/>.</exception>
    public static void Validate(XElement root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var report = new SchemaReport(CheckpointSchema.SchemaName);
        CheckpointSchema.Check(root, report);
        report.ThrowIfAny();
    }

    private static CheckpointDisk ParseDisk(XElement disk)
    {
        var type = CheckpointType.Bitmap;
        if (disk.Attribute("checkpoint") is { } checkpoint)
        {
            // The schema compares tokens, libvirt's parser the exact string.
            type = CheckpointTypeNames.Table.Parse(checkpoint.Value)
                   ?? throw new DocumentException(
                       DocumentErrorReason.InvalidAttribute,
                       $"Invalid value for attribute 'checkpoint' in element 'disk': '{checkpoint.Value}'.");
        }

        // size= on input is ignored: it is an output-only estimate.
        return new CheckpointDisk(disk.Attribute("name")!.Value, type, disk.Attribute("bitmap")?.Value);
    }

    // libvirt's virXPathString returns NULL for an empty string.
    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
