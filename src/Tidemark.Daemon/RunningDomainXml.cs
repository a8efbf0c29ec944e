using System.Collections.Immutable;
using System.Globalization;
using System.Security;
using System.Text;
using System.Xml.Linq;
using Tidemark.Engine.Disks;
using Tidemark.Engine.Domains;
using Tidemark.Formats.Domains;

namespace Tidemark.Daemon;

/// <summary>
/// A running domain's XML: its definition plus, under <c>&lt;metadata&gt;</c> in Tidemark's
/// namespace, the NBD URI each disk is served on, which is where a guest (or qemu-io standing
/// in for one) connects: <c>uri</c> on the domain's unix socket, and <c>tcp-uri</c> on
/// 127.0.0.1 when the domain was started with the TCP listener. libvirt keeps foreign-namespace metadata exactly so; clients that do
/// not know the namespace ignore it.
/// </summary>
public static class RunningDomainXml
{
    /// <summary>Tidemark's domain metadata namespace.</summary>
    public const string Namespace = "https://tidemark.dev/schemas/domain/1.0";

    /// <summary>The element's prefix, as libvirt writes metadata elements with the prefix they were given.</summary>
    public const string Prefix = "tidemark";

    /// <summary>
    /// The running definition as libvirt's live XML has it (the domain's <c>id</c>, the disks'
    /// aliases, node indexes and backing chains: <see cref="LiveDiskChains"/>), with each
    /// running disk's NBD URI in its metadata.
    /// </summary>
    public static string Format(DomainDefinition definition, RunningDomain running, int id, IReadOnlyDictionary<string, ImmutableArray<uint>> nodes, DomainFormatFlags flags)
    {
        ArgumentNullException.ThrowIfNull(running);
        ArgumentNullException.ThrowIfNull(nodes);

        // A definition saved before define dropped the element could still hold an old run's.
        var live = DiskAliases.WithAliases(WithoutRunState(definition));
        LiveDiskChains.Apply(live, running, nodes);

        // <domain type='kvm' id='1'>: the id right after the type, as libvirt writes it.
        var attributes = live.Attributes().Where(a => a.Name != "id").ToList();
        live.ReplaceAttributes(attributes.Take(1), new XAttribute("id", id.ToString(CultureInfo.InvariantCulture)), attributes.Skip(1));
        var xml = DomainFormatter.Format(DomainParser.Parse(live), flags);
        var element = new StringBuilder();
        element.Append("    <").Append(Prefix).Append(":disks xmlns:").Append(Prefix).Append("='").Append(Namespace).Append("'>\n");
        foreach (var disk in running.Disks)
        {
            element.Append("      <").Append(Prefix).Append(":disk target='").Append(SecurityElement.Escape(disk.Target))
                .Append("' uri='").Append(SecurityElement.Escape(NbdUri(running, disk.Target))).Append('\'');
            if (NbdTcpUri(running, disk.Target) is { } tcp)
            {
                element.Append(" tcp-uri='").Append(SecurityElement.Escape(tcp)).Append('\'');
            }

            element.Append("/>\n");
        }

        element.Append("    </").Append(Prefix).Append(":disks>\n");

        // The formatter writes one element per line, two spaces deep: <metadata> goes after
        // <uuid> (libvirt's order: name, uuid, title, description, metadata), or an existing
        // one receives the element.
        var existing = xml.IndexOf("  </metadata>\n", StringComparison.Ordinal);
        if (existing >= 0)
        {
            return xml.Insert(existing, element.ToString());
        }

        var anchor = LastLineOf(xml, "  <description>") ?? LastLineOf(xml, "  <title>") ?? LastLineOf(xml, "  <uuid>") ?? LastLineOf(xml, "  <name>");
        var block = "  <metadata>\n" + element + "  </metadata>\n";
        return anchor is { } at ? xml.Insert(at, block) : xml;
    }

    /// <summary>
    /// <paramref name="definition"/> without the element <see cref="Format"/> adds. A definition
    /// is often made from a running domain's XML (<c>virsh dumpxml</c> then <c>define</c>;
    /// <c>virtnbdrestore --define</c> of the XML virtnbdbackup saved during the backup, under a
    /// new name): the element describes that run of that domain, and kept it would name the old
    /// domain's socket in the new definition, ahead of the new domain's own once it runs. libvirt
    /// likewise keeps none of a document's live-only state when it defines it (parsed without
    /// VIR_DOMAIN_DEF_PARSE_STATUS). Other metadata is the user's and stays. So do the disks'
    /// aliases, the running domain's names for them, but for the user's own (<c>ua-</c>), which
    /// libvirt alone keeps in a definition (virDomainDeviceInfoParseXML).
    /// </summary>
    public static DomainDefinition WithoutRunState(DomainDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var name = XName.Get("disks", Namespace);
        var runAliases = definition.Element.Element("devices")?.Elements("disk").Elements("alias")
            .Where(a => a.Attribute("name")?.Value?.StartsWith(DiskAliases.UserPrefix, StringComparison.Ordinal) != true).Any() == true;
        if (definition.Element.Element("metadata")?.Element(name) is null && !runAliases && definition.Element.Attribute("id") is null && !NodeIndexes(definition.Element).Any())
        {
            return definition;
        }

        var copy = new XElement(definition.Element);
        copy.Attribute("id")?.Remove();
        var indexed = NodeIndexes(copy).ToList();
        foreach (var index in indexed)
        {
            var source = index.Parent!;
            index.Remove();

            // An ejected drive's <source index='N'/> is nothing without its index.
            if (source.Name == "source" && !source.HasAttributes && !source.HasElements)
            {
                source.Remove();
            }
        }
        copy.Element("devices")?.Elements("disk").Elements("alias")
            .Where(a => a.Attribute("name")?.Value?.StartsWith(DiskAliases.UserPrefix, StringComparison.Ordinal) != true).Remove();
        if (copy.Element("metadata") is { } metadata)
        {
            metadata.Elements(name).Remove();
            if (!metadata.HasElements)
            {
                metadata.Remove();
            }
        }

        return DomainParser.Parse(copy);
    }

    /// <summary>The live XML's node indexes: on each disk's source and backing layers (libvirt reads them only from its status files).</summary>
    private static IEnumerable<XAttribute> NodeIndexes(XElement domain)
        => (domain.Element("devices")?.Elements("disk") ?? []).SelectMany(d => d.Elements("source").Concat(d.Descendants("backingStore")).Concat(d.Descendants("backingStore").Elements("source")))
            .Attributes("index");

    /// <summary>
    /// The URI of disk <paramref name="target"/> of a running domain, as libnbd and qemu write it
    /// (the socket is named after the domain, and a domain name may hold a space or any letter).
    /// </summary>
    public static string NbdUri(RunningDomain running, string target) => Tidemark.Nbd.Client.NbdUri.ForUnixSocket(running.SocketPath, target);

    /// <summary>The URI of disk <paramref name="target"/> on the domain's 127.0.0.1 listener, or null when it has none.</summary>
    public static string? NbdTcpUri(RunningDomain running, string target)
        => running.TcpEndPoint is { } endPoint ? Tidemark.Nbd.Client.NbdUri.ForTcp(endPoint, target) : null;

    // The offset just past the element that starts a line with `start` (single-line elements only).
    private static int? LastLineOf(string xml, string start)
    {
        var at = xml.IndexOf("\n" + start, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var end = xml.IndexOf('\n', at + 1);
        return end < 0 ? null : end + 1;
    }
}
