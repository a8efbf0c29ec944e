using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Every case that the conformance README describes is a theory row above: the case lists match
/// the files on disk, so no case can be dropped silently. Counts: checkpoints 5 in→out/out→out
/// plus 2 invalid, backups 10, status XML 1, schema agreement 37 files.
/// </summary>
public sealed class ConformanceInventoryTests
{
    [Fact]
    public void CheckpointCases_CoverEveryInputFile()
    {
        var inputs = Directory.GetFiles(Path.Combine(Conformance.Tests, "qemudomaincheckpointxml2xmlin"), "*.xml").Select(Path.GetFileNameWithoutExtension).Order();
        var cases = CheckpointConformanceTests.Cases.Select(row => row.Data.Item1).Where(n => n != "redefine").Concat(CheckpointConformanceTests.InvalidCases.Select(row => row.Data)).Order();

        Assert.Equal(inputs, cases);
        Assert.Equal(5, CheckpointConformanceTests.Cases.Length);
        Assert.Equal(2, CheckpointConformanceTests.InvalidCases.Length);
    }

    [Fact]
    public void BackupCases_CoverEveryInputAndOutputFile()
    {
        var inputs = Directory.GetFiles(Path.Combine(Conformance.Tests, "domainbackupxml2xmlin"), "*.xml").Select(Path.GetFileNameWithoutExtension).Order();
        var outputs = Directory.GetFiles(Path.Combine(Conformance.Tests, "domainbackupxml2xmlout"), "*.xml").Select(Path.GetFileNameWithoutExtension).Order();
        var cases = BackupConformanceTests.Cases.Select(row => row.Data.Item1).Order();

        Assert.Equal(inputs, cases);
        Assert.Equal(outputs, cases);
        Assert.Equal(10, BackupConformanceTests.Cases.Length);
    }

    [Fact]
    public void SchemaAgreement_CoversEveryXmlFile()
    {
        var files = LibvirtConformance.XmlFiles().ToArray();

        Assert.Equal(37, files.Length);
        Assert.Equal(files, SchemaAgreementTests.Files.Select(row => row.Data));
    }
}
