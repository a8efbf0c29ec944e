using System.Text;
using System.Xml.Linq;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>tidemark format</c> drives the conformance cases that need no harness step: the backup
/// cases against a domain file of the fake domain (README §2) with suffix SUFFIX, and the
/// checkpoint redefine case. Each output is byte-identical to libvirt's and passes xmllint.
/// </summary>
public sealed class FormatCommandTests
{
    private static string Tests => LibvirtConformance.Tests;

    private static string Schema(string name) => Path.Combine(LibvirtConformance.Schemas, name);

    public static TheoryData<string> BackupCases => new()
    {
        "empty", "backup-pull", "backup-pull-unix", "backup-pull-fd", "backup-pull-seclabel", "backup-pull-encrypted",
        "backup-push", "backup-push-seclabel", "backup-push-encrypted",
    };

    [Theory]
    [MemberData(nameof(BackupCases))]
    public async Task Format_BackupCase_WithFakeDomainAndSuffix_IsLibvirtsOutput(string name)
    {
        using var dir = new TempDirectory();
        var input = Path.Combine(Tests, "domainbackupxml2xmlin", name + ".xml");
        var domain = dir.File("domain.xml");
        await File.WriteAllTextAsync(domain, FakeDomainXml(input), TestContext.Current.CancellationToken);

        var run = await CliRun.RunAsync("format", input, "--domain", domain, "--suffix", "SUFFIX");

        Assert.Equal(string.Empty, run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(Tests, "domainbackupxml2xmlout", name + ".xml"), TestContext.Current.CancellationToken), run.Stdout);
        await AssertXmllintAcceptsAsync(dir, run.Stdout, "domainbackup.rng");
    }

    [Fact]
    public async Task Format_InternalBackupCase_KeepsStateAndPrivateData()
    {
        using var dir = new TempDirectory();
        var input = Path.Combine(Tests, "domainbackupxml2xmlin", "backup-pull-internal-invalid.xml");
        var domain = dir.File("domain.xml");
        await File.WriteAllTextAsync(domain, FakeDomainXml(input), TestContext.Current.CancellationToken);

        var run = await CliRun.RunAsync("format", input, "--internal", "--domain", domain, "--suffix", "SUFFIX");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(Tests, "domainbackupxml2xmlout", "backup-pull-internal-invalid.xml"), TestContext.Current.CancellationToken), run.Stdout);
    }

    [Fact]
    public async Task Format_RedefineCase_IsItsOwnOutput()
    {
        var file = Path.Combine(Tests, "qemudomaincheckpointxml2xmlout", "redefine.xml");

        var run = await CliRun.RunAsync("format", file, "--redefine");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken), run.Stdout);
    }

    [Fact]
    public async Task Format_CheckpointCreate_WithDomain_AlignsAndNamesAfterTheCreationTime()
    {
        using var dir = new TempDirectory();
        var domain = Path.Combine(Repository.Root, "examples", "domain.xml");

        var run = await CliRun.RunAsync("format", Path.Combine(Tests, "qemudomaincheckpointxml2xmlin", "sample.xml"), "--domain", domain, "--creation-time", "1525889631");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(
            "<domaincheckpoint>\n  <name>1525889631</name>\n  <description>Completion of updates after OS install</description>\n"
            + "  <creationTime>1525889631</creationTime>\n  <disks>\n"
            + "    <disk name='vda' checkpoint='bitmap' bitmap='1525889631'/>\n    <disk name='vdb' checkpoint='no'/>\n    <disk name='vdc' checkpoint='no'/>\n"
            + "  </disks>\n</domaincheckpoint>\n",
            run.Stdout);
        await AssertXmllintAcceptsAsync(dir, run.Stdout, "domaincheckpoint.rng");
    }

    [Fact]
    public async Task Format_PullWithDriverDefaults_ShowsExportNameBitmapAndFormat()
    {
        var run = await CliRun.RunAsync(
            "format",
            Path.Combine(Repository.Root, "examples", "backup-pull-incremental.xml"),
            "--domain",
            Path.Combine(Repository.Root, "examples", "domain.xml"),
            "--suffix",
            "1",
            "--driver-defaults");

        Assert.Equal(0, run.ExitCode);
        Assert.Contains(
            "    <disk name='vdb' backup='yes' type='file' backupmode='incremental' incremental='tour-1' exportname='vdb' exportbitmap='backup-vdb'>\n"
            + "      <driver type='qcow2'/>\n      <scratch file='/var/lib/libvirt/images/tour-data.qcow2.1'/>\n",
            run.Stdout,
            StringComparison.Ordinal);
    }

    [Fact]
    public async Task Format_RedefineWithNoDomain_LeavesTheDomainOut()
    {
        var run = await CliRun.RunAsync("format", Path.Combine(Repository.Root, "examples", "checkpoint-redefine.xml"), "--redefine", "--no-domain");

        Assert.Equal(0, run.ExitCode);
        Assert.DoesNotContain("<domain ", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdc' checkpoint='no'/>", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Format_Domain_ComesBackUnchanged()
    {
        var file = Path.Combine(Repository.Root, "examples", "domain.xml");

        var run = await CliRun.RunAsync("format", file);

        Assert.Equal(await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken), run.Stdout);
    }

    [Fact]
    public async Task Format_InvalidDocument_IsOneErrorWithLibvirtText()
    {
        var run = await CliRun.RunAsync("format", Path.Combine(Tests, "qemudomaincheckpointxml2xmlin", "name-invalid.xml"));

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(string.Empty, run.Stdout);
        Assert.Equal(
            "error: XML document failed to validate against schema: Unable to validate doc against domaincheckpoint.rng\n"
            + "line 3: element 'name': value '../escape' is not a valid checkpoint name\n",
            run.Stderr);
    }

    [Fact]
    public async Task Format_AlignmentError_UsesLibvirtText()
    {
        var run = await CliRun.RunAsync(
            "format",
            Path.Combine(Tests, "domainbackupxml2xmlin", "backup-pull.xml"),
            "--domain",
            Path.Combine(Repository.Root, "examples", "domain.xml"));

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: unsupported configuration: no disk named 'hda'\n", run.Stderr);
    }

    [Theory]
    [InlineData("checkpoint-create.xml", "--suffix", "x", "error: --suffix applies to backup documents only\n")]
    [InlineData("backup-push.xml", "--redefine", null, "error: --redefine applies to checkpoint documents only\n")]
    [InlineData("backup-push.xml", "--suffix", "x", "error: --suffix needs --domain: file names are generated while aligning with the domain\n")]
    public async Task Format_OptionForAnotherKind_IsRefused(string example, string option, string? value, string error)
    {
        string[] args = ["format", Path.Combine(Repository.Root, "examples", example), option, .. value is null ? Array.Empty<string>() : [value]];

        var run = await CliRun.RunAsync(args);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(error, run.Stderr);
    }

    // README §2 step 2, as a domain document: one writable qcow2 file disk per backup disk
    // (backup='no' ones too), in order, then vdextradisk.
    private static string FakeDomainXml(string backupFile)
    {
        var names = XDocument.Load(backupFile).Root!.Elements("disks").Elements("disk").Select(d => d.Attribute("name")!.Value).Append("vdextradisk");
        var xml = new StringBuilder("<domain type='qemu'>\n  <name>fake</name>\n  <devices>\n");
        foreach (var dev in names)
        {
            xml.Append($"    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/fake/{dev}.qcow2'/>\n      <target dev='{dev}' bus='virtio'/>\n    </disk>\n");
        }

        return xml.Append("  </devices>\n</domain>\n").ToString();
    }

    private static async Task AssertXmllintAcceptsAsync(TempDirectory dir, string xml, string schema)
    {
        var file = dir.File("output.xml");
        await File.WriteAllTextAsync(file, xml, TestContext.Current.CancellationToken);
        var result = await Peer.RunAsync("xmllint", ["--noout", "--relaxng", Schema(schema), file]);
        Assert.True(result.ExitCode == 0, result.Stderr);
    }
}
