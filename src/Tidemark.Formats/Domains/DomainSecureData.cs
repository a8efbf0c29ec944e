using System.Xml.Linq;

namespace Tidemark.Formats.Domains;

/// <summary>
/// What libvirt writes of a domain only for a caller that asked for secure data
/// (<c>VIR_DOMAIN_DEF_FORMAT_SECURE</c>: <c>virsh dumpxml --security-info</c>, a checkpoint's
/// embedded domain under <c>--security-info</c>, and the files libvirt keeps), and leaves out
/// of every other document (src/conf/domain_conf.c):
/// <list type="bullet">
/// <item>a graphics console's password, the <c>passwd</c> attribute of <c>&lt;graphics&gt;</c>
/// (<c>virDomainGraphicsAuthDefFormatAttr</c>, for VNC and SPICE; <c>passwdValidTo</c> and
/// <c>connected</c> stay);</item>
/// <item>the HTTP cookies of a network disk source, the <c>&lt;cookies&gt;</c> element of any
/// <c>&lt;source&gt;</c>, a backing store's included (<c>virDomainDiskSourceFormatNetworkCookies</c>).</item>
/// </list>
/// Tidemark keeps a domain as read, so these are taken out of a copy when it is formatted for a
/// caller without the right to see them: a read-only connection may not ask for secure data.
/// </summary>
public static class DomainSecureData
{
    /// <summary>Whether <paramref name="domain"/> holds anything <see cref="Without"/> would leave out.</summary>
    public static bool Any(XElement domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        return Passwords(domain).Any() || Cookies(domain).Any();
    }

    /// <summary><paramref name="domain"/> itself when it holds no secure data, else a copy without it.</summary>
    public static XElement Without(XElement domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (!Any(domain))
        {
            return domain;
        }

        var copy = new XElement(domain);
        Passwords(copy).Remove();
        Cookies(copy).Remove();
        return copy;
    }

    private static IEnumerable<XAttribute> Passwords(XElement domain)
        => domain.Elements("devices").Elements("graphics").Attributes("passwd");

    // Every <source> of the domain's disks, at any depth: a disk's own, its backing stores',
    // its mirror's.
    private static IEnumerable<XElement> Cookies(XElement domain)
        => domain.Elements("devices").Elements("disk").Descendants("source").Elements("cookies");
}
