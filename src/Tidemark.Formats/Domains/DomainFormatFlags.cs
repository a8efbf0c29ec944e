namespace Tidemark.Formats.Domains;

/// <summary>How a domain is formatted (libvirt <c>VIR_DOMAIN_DEF_FORMAT_*</c>).</summary>
[Flags]
public enum DomainFormatFlags
{
    /// <summary>Without secure data (<see cref="DomainSecureData"/>): what anyone may read.</summary>
    None = 0,

    /// <summary>With secure data: for <c>VIR_DOMAIN_XML_SECURE</c> and for the files Tidemark keeps.</summary>
    Secure = 1 << 0,
}
