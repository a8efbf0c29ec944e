using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>Paths into libvirt's conformance data and the schemas xmllint validates against.</summary>
internal static class Conformance
{
    public static string Tests => Path.Combine(Repository.LibvirtConformance, "tests");

    public static string Schemas => Path.Combine(Repository.LibvirtConformance, "src", "conf", "schemas");

    public static string CheckpointIn(string name) => Path.Combine(Tests, "qemudomaincheckpointxml2xmlin", name + ".xml");

    public static string CheckpointOut(string name) => Path.Combine(Tests, "qemudomaincheckpointxml2xmlout", name + ".xml");

    public static string BackupIn(string name) => Path.Combine(Tests, "domainbackupxml2xmlin", name + ".xml");

    public static string BackupOut(string name) => Path.Combine(Tests, "domainbackupxml2xmlout", name + ".xml");

    /// <summary>Every XML file of the conformance folder, relative to it.</summary>
    public static IEnumerable<string> AllXmlFiles()
        => Directory.EnumerateFiles(Repository.LibvirtConformance, "*.xml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Repository.LibvirtConformance, f))
            .Order(StringComparer.Ordinal);
}
