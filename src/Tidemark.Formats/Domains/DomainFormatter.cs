using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Domains;

/// <summary>
/// Writes a <c>&lt;domain&gt;</c> back as read, in libvirt's layout (two-space indentation,
/// single-quoted attributes, one element per line). Tidemark models only the disk-related part
/// of a domain, so the document is not rebuilt from the model: a domain that libvirt formatted
/// comes back byte for byte.
/// </summary>
public static class DomainFormatter
{
    /// <summary>Formats <paramref name="domain"/> as a document of its own.</summary>
    public static string Format(DomainDefinition domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        var w = new LibvirtXmlWriter();
        w.Verbatim(domain.Element);
        return w.ToString();
    }
}
