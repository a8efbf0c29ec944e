using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Domains;

/// <summary>
/// Writes a <c>&lt;domain&gt;</c> back as read, in libvirt's layout (two-space indentation,
/// single-quoted attributes, one element per line). Tidemark models only the disk-related part
/// of a domain, so the document is not rebuilt from the model: a domain that libvirt formatted
/// comes back byte for byte, its secure data left out unless asked for (<see cref="DomainSecureData"/>).
/// </summary>
public static class DomainFormatter
{
    /// <summary>Formats <paramref name="domain"/> as a document of its own.</summary>
    public static string Format(DomainDefinition domain, DomainFormatFlags flags)
    {
        ArgumentNullException.ThrowIfNull(domain);
        var w = new LibvirtXmlWriter();
        Write(w, domain, flags);
        return w.ToString();
    }

    /// <summary>Writes <paramref name="domain"/> into <paramref name="w"/>, as a document or embedded in one.</summary>
    internal static void Write(LibvirtXmlWriter w, DomainDefinition domain, DomainFormatFlags flags)
        => w.Verbatim(flags.HasFlag(DomainFormatFlags.Secure) ? domain.Element : DomainSecureData.Without(domain.Element));
}
