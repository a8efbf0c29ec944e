using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Tests;

/// <summary>libvirt's output rules (spec §2.4): escaping, dropped control characters, kept domain content.</summary>
public sealed class FormattingTests
{
    [Fact]
    public async Task SpecialCharacters_AreEscapedAsLibvirtDoes()
    {
        var checkpoint = new CheckpointDefinition("c1", "a<b & 'c' \"d\" > e", null, 5, [new CheckpointDisk("/img/it's.qcow2", CheckpointType.Bitmap, "b&m")]);

        var text = CheckpointFormatter.Format(checkpoint);

        Assert.Equal(
            "<domaincheckpoint>\n  <name>c1</name>\n  <description>a&lt;b &amp; &apos;c&apos; &quot;d&quot; &gt; e</description>\n  <creationTime>5</creationTime>\n"
            + "  <disks>\n    <disk name='/img/it&apos;s.qcow2' checkpoint='bitmap' bitmap='b&amp;m'/>\n  </disks>\n</domaincheckpoint>\n",
            text);
        await Xmllint.AssertValidAsync(text, "domaincheckpoint.rng");
        Assert.Equal("a<b & 'c' \"d\" > e", CheckpointParser.Parse(text, CheckpointParseMode.Redefine).Description);
    }

    [Fact]
    public void ControlCharacters_OtherThanTabLfCr_AreDropped()
    {
        var text = CheckpointFormatter.Format(new CheckpointDefinition("c1", "a\u0001b\tc\nd\u001fe", null, 0, []));

        Assert.Contains("<description>ab\tc\nde</description>", text, StringComparison.Ordinal);
    }

    [Fact]
    public void EmbeddedDomain_KeepsNamespacesAndUnmodelledContent_DropsComments()
    {
        const string xml = """
            <domaincheckpoint>
              <name>c1</name>
              <creationTime>1</creationTime>
              <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
                <!-- a comment libvirt would not keep either -->
                <name>vm</name>
                <devices>
                  <disk type='file' device='disk'>
                    <source file='/img/a.qcow2'/>
                    <target dev='vda' bus='virtio'/>
                  </disk>
                </devices>
                <qemu:commandline>
                  <qemu:arg value='-no-user-config'/>
                </qemu:commandline>
              </domain>
            </domaincheckpoint>
            """;

        var text = CheckpointFormatter.Format(CheckpointAligner.AssignBitmapNames(CheckpointParser.Parse(xml, CheckpointParseMode.Redefine)));

        Assert.Equal(
            """
            <domaincheckpoint>
              <name>c1</name>
              <creationTime>1</creationTime>
              <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
                <name>vm</name>
                <devices>
                  <disk type='file' device='disk'>
                    <source file='/img/a.qcow2'/>
                    <target dev='vda' bus='virtio'/>
                  </disk>
                </devices>
                <qemu:commandline>
                  <qemu:arg value='-no-user-config'/>
                </qemu:commandline>
              </domain>
            </domaincheckpoint>

            """,
            text);
    }

    [Fact]
    public void DomainFormatter_WritesACanonicalDomainUnchanged()
    {
        var text = File.ReadAllText(Path.Combine(Conformance.Tests, "virshtestdata", "checkpoint-c2.xml"));
        var start = text.IndexOf("  <domain ", StringComparison.Ordinal);
        var end = text.IndexOf("  </domain>\n", StringComparison.Ordinal) + "  </domain>\n".Length;
        var embedded = string.Concat(text[start..end].Split('\n').Select(l => l.Length >= 2 ? l[2..] + "\n" : l)).TrimEnd('\n') + "\n";

        Assert.Equal(embedded, DomainFormatter.Format(DomainParser.Parse(embedded, cancellationToken: TestContext.Current.CancellationToken), DomainFormatFlags.Secure));
    }
}
