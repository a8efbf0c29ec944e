using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Paths into libvirt's conformance data and the schemas xmllint validates against. Reading any
/// of them skips the test when the data set is missing (fails it under CI): see
/// <see cref="LibvirtConformance"/>.
/// </summary>
internal static class Conformance
{
    public static string Tests => LibvirtConformance.Tests;

    public static string Schemas => LibvirtConformance.Schemas;

    public static string CheckpointIn(string name) => Path.Combine(Tests, "qemudomaincheckpointxml2xmlin", name + ".xml");

    public static string CheckpointOut(string name) => Path.Combine(Tests, "qemudomaincheckpointxml2xmlout", name + ".xml");

    public static string BackupIn(string name) => Path.Combine(Tests, "domainbackupxml2xmlin", name + ".xml");

    public static string BackupOut(string name) => Path.Combine(Tests, "domainbackupxml2xmlout", name + ".xml");
}
