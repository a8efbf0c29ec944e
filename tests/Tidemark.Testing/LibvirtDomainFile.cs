namespace Tidemark.Testing;

/// <summary>What libvirt's own domain configuration files look like, for tests that hold Tidemark's to them.</summary>
public static class LibvirtDomainFile
{
    /// <summary>
    /// The comment libvirt writes above a persistent domain's definition: virXMLEmitWarning
    /// (src/util/virxml.c) with command "edit" and, when given, the name virDomainDefSaveXML
    /// picks (src/conf/domain_conf.c). Copied from libvirt, not from the engine.
    /// </summary>
    public static string EditWarning(string? name) => $"""
        <!--
        WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
        OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
          virsh edit{(name is null ? string.Empty : " " + name)}
        or other application using the libvirt API.
        -->


        """;
}
