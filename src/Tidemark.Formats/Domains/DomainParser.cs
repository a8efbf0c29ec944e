using System.Xml.Linq;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Domains;

/// <summary>
/// Parses a <c>&lt;domain&gt;</c> into a <see cref="DomainDefinition"/>. Only the disk-related part
/// is modelled and checked (<see cref="DomainSchema"/>); the rest is kept as read.
/// </summary>
public static class DomainParser
{
    /// <summary>Parses a whole domain document.</summary>
    /// <exception cref="DocumentException">Malformed XML, another root, or an invalid modelled part.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the text was parsed.</exception>
    public static DomainDefinition Parse(string xml, string source = "(domain)", CancellationToken cancellationToken = default)
    {
        var document = XmlDocumentLoader.Load(xml, source, cancellationToken);
        return Parse(XmlDocumentLoader.RequireRoot(document, "domain"));
    }

    /// <summary>Parses a <c>&lt;domain&gt;</c> element (standalone, or embedded in a checkpoint).</summary>
    /// <exception cref="DocumentException">The modelled part breaks libvirt's schema.</exception>
    public static DomainDefinition Parse(XElement domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        var report = new SchemaReport("domain.rng");
        DomainSchema.Check(domain, report);
        report.ThrowIfAny();

        // The schema check above guarantees every value read below is present and in range.
        var disks = domain.Element("devices")?.Elements("disk").Select(ParseDisk).ToList() ?? [];
        return new DomainDefinition(
            SchemaTypes.Token(domain.Attribute("type")!.Value),
            domain.Element("name")!.Value,
            domain.Element("uuid")?.Value,
            disks,
            domain);
    }

    /// <summary>One <c>&lt;disk&gt;</c> element, read as <see cref="Parse(XElement)"/> reads each.</summary>
    public static DomainDisk ParseDisk(XElement disk)
    {
        // The schema compared tokens, so the values are read as tokens too.
        var type = disk.Attribute("type") is { } t ? DomainDiskNames.SourceTypes.Parse(SchemaTypes.Token(t.Value))!.Value : DiskSourceType.File;
        var device = disk.Attribute("device") is { } d ? DomainDiskNames.Devices.Parse(SchemaTypes.Token(d.Value))!.Value : DiskDevice.Disk;
        var driver = disk.Element("driver");
        var target = disk.Element("target")!;
        return new DomainDisk(
            type,
            device,
            driver?.Attribute("name")?.Value,
            driver?.Attribute("type")?.Value,
            SourcePath(type, disk.Element("source")),
            target.Attribute("dev")!.Value,
            target.Attribute("bus")?.Value,
            disk.Element("readonly") is not null,
            ParseBackingStore(disk.Element("backingStore")),
            disk.Element("shareable") is not null,
            disk.Element("source")?.Element("slices") is not null,
            driver?.Attribute("error_policy")?.Value is { } write ? SchemaTypes.Token(write) : null,
            driver?.Attribute("rerror_policy")?.Value is { } read ? SchemaTypes.Token(read) : null,
            driver?.Attribute("copy_on_read")?.Value is { } copy && SchemaTypes.Token(copy) == "on");
    }

    private static DomainBackingStore? ParseBackingStore(XElement? store)
    {
        if (store is null)
        {
            return null;
        }

        var type = store.Attribute("type") is { } t ? DomainDiskNames.SourceTypes.Parse(SchemaTypes.Token(t.Value)) : null;
        return new DomainBackingStore(
            type,
            store.Element("format")?.Attribute("type")?.Value,
            type is null ? null : SourcePath(type.Value, store.Element("source")),
            ParseBackingStore(store.Element("backingStore")));
    }

    // libvirt keeps one "path" per source: the file, the device, the directory, or for network
    // disks the volume name.
    private static string? SourcePath(DiskSourceType type, XElement? source)
    {
        var attribute = type switch
        {
            DiskSourceType.File => "file",
            DiskSourceType.Block => "dev",
            DiskSourceType.Dir => "dir",
            DiskSourceType.Network => "name",
            _ => null,
        };
        var value = attribute is null ? null : source?.Attribute(attribute)?.Value;
        return string.IsNullOrEmpty(value) ? null : value;
    }
}
