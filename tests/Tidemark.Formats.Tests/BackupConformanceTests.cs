using System.Xml.Linq;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Tests;

/// <summary>
/// libvirt's <c>domainbackupxml2xml</c> cases (conformance README §2): parse, align against the
/// fake domain with suffix <c>SUFFIX</c>, format, compare byte for byte, validate with xmllint.
/// </summary>
public sealed class BackupConformanceTests
{
    public static TheoryDataRow<string, BackupXmlMode>[] Cases =>
    [
        .. new[]
        {
            "empty", "backup-pull", "backup-pull-unix", "backup-pull-fd", "backup-pull-seclabel", "backup-pull-encrypted",
            "backup-push", "backup-push-seclabel", "backup-push-encrypted",
        }.Select(n => Case(n, BackupXmlMode.Public)),
        Case("backup-pull-internal-invalid", BackupXmlMode.Internal),
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Case_FormatsLikeLibvirt(string name, BackupXmlMode mode)
    {
        var expected = await File.ReadAllTextAsync(Conformance.BackupOut(name), TestContext.Current.CancellationToken);
        var backup = BackupParser.Parse(await File.ReadAllTextAsync(Conformance.BackupIn(name), TestContext.Current.CancellationToken), mode);

        var aligned = BackupAligner.Align(backup, FakeDomain(backup), "SUFFIX");
        var actual = BackupFormatter.Format(aligned, mode);

        Assert.Equal(expected, actual);
        if (mode == BackupXmlMode.Public)
        {
            await Xmllint.AssertValidAsync(actual, "domainbackup.rng");
        }
    }

    [Fact]
    public void InternalCase_InPublicMode_IsRefusedByTheSchema()
    {
        var xml = File.ReadAllText(Conformance.BackupIn("backup-pull-internal-invalid"));

        var e = Assert.Throws<DocumentException>(() => BackupParser.Parse(xml));

        Assert.Equal(DocumentErrorReason.SchemaViolation, e.Reason);
        Assert.Contains("line 5: element 'disk': attribute 'state': attribute not allowed here", e.Problems);
        Assert.Contains("line 30: element 'privateData': element not allowed in <domainbackup>", e.Problems);
    }

    /// <summary>
    /// The status XML of a running pull backup (README §3): its <c>&lt;backups&gt;</c> subtree,
    /// read and written in the internal form, comes back unchanged.
    /// </summary>
    [Fact]
    public void StatusXml_BackupsSubtree_RoundTrips()
    {
        var path = Path.Combine(Conformance.Tests, "qemustatusxml2xmldata", "backup-pull-in.xml");
        var text = File.ReadAllText(path);
        var status = XDocument.Parse(text);
        var element = status.Root!.Element("backups")!.Element("domainbackup")!;

        var backup = BackupParser.Parse(element, BackupXmlMode.Internal);
        var formatted = BackupFormatter.Format(backup, BackupXmlMode.Internal, indent: 4);

        var start = text.IndexOf("    <domainbackup ", StringComparison.Ordinal);
        var end = text.IndexOf("</domainbackup>\n", start, StringComparison.Ordinal) + "</domainbackup>\n".Length;
        Assert.Equal(text[start..end], formatted);
        Assert.Equal(BackupDiskState.Running, backup.Disks[0].State);
        Assert.Equal(123u, backup.Disks[0].Store!.Index);
        Assert.Equal("libvirt-1337-format", backup.Disks[0].Store!.FormatNodeName);
        Assert.Equal(("testalias-secret", "testalias-tlsx509"), (backup.TlsSecretAlias, backup.TlsAlias));
        Assert.Equal(File.ReadAllText(Path.Combine(Conformance.Tests, "qemustatusxml2xmldata", "backup-pull-out.xml")), text);
    }

    /// <summary>The backup <c>&lt;blockjob&gt;</c> of the same status XML round-trips too.</summary>
    [Fact]
    public void StatusXml_BackupBlockJob_RoundTrips()
    {
        var text = File.ReadAllText(Path.Combine(Conformance.Tests, "qemustatusxml2xmldata", "backup-pull-in.xml"));
        var element = XDocument.Parse(text).Root!.Element("blockjobs")!.Elements("blockjob").Single(j => j.Attribute("type")!.Value == "backup");

        var job = BackupBlockJobXml.Parse(element);

        var start = text.IndexOf("    <blockjob ", StringComparison.Ordinal);
        var end = text.IndexOf("</blockjob>\n", start, StringComparison.Ordinal) + "</blockjob>\n".Length;
        Assert.Equal(text[start..end], BackupBlockJobXml.Format(job, indent: 4));
        Assert.Equal(("vda", "bitmapname", 1337u, StorageFormat.Qcow2), (job.DiskTarget, job.Bitmap, job.Store!.Index, job.Store.Format));
    }

    private static TheoryDataRow<string, BackupXmlMode> Case(string name, BackupXmlMode mode)
        => new(name, mode) { TestDisplayName = $"domainbackupxml2xml in->out: {name}.xml ({mode})" };

    /// <summary>
    /// README §2 step 2: one disk per backup disk, named after it, in order (backup='no' ones
    /// included), then <c>vdextradisk</c>; each a writable qcow2 file at /fake/&lt;dev&gt;.qcow2.
    /// </summary>
    internal static DomainDefinition FakeDomain(BackupDefinition backup)
    {
        var disks = backup.Disks.Select(d => d.Name).Append("vdextradisk")
            .Select(dev => new DomainDisk(DiskSourceType.File, DiskDevice.Disk, "qemu", "qcow2", $"/fake/{dev}.qcow2", dev, "virtio", ReadOnly: false))
            .ToList();
        return new DomainDefinition("qemu", "fake", null, disks, new XElement("domain"));
    }
}
