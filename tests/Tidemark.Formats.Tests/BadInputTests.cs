using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Bad input of every kind is a <see cref="DocumentException"/> whose message names what is
/// wrong, in libvirt's words where libvirt has them.
/// </summary>
public sealed class BadInputTests
{
    [Fact]
    public void MalformedXml_UnclosedElement_NamesLineAndColumn()
    {
        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate("<domaincheckpoint>\n  <name>c1</nam>\n</domaincheckpoint>\n", "c1.xml", cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(DocumentErrorReason.MalformedXml, e.Reason);
        Assert.StartsWith("XML error: failed to parse xml document 'c1.xml': line 2, column 13: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedXml_Empty_IsRefused()
        => Assert.Equal(DocumentErrorReason.MalformedXml, Assert.Throws<DocumentException>(() => DocumentValidator.Validate(string.Empty, cancellationToken: TestContext.Current.CancellationToken)).Reason);

    [Fact]
    public void MalformedXml_TwoRoots_IsRefused()
        => Assert.Equal(DocumentErrorReason.MalformedXml, Assert.Throws<DocumentException>(() => DocumentValidator.Validate("<domainbackup/><domainbackup/>", cancellationToken: TestContext.Current.CancellationToken)).Reason);

    [Fact]
    public void WrongRoot_ForCheckpoint_UsesLibvirtText()
    {
        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse("<domainsnapshot/>", CheckpointParseMode.Create));

        Assert.Equal("XML error: expecting root element of 'domaincheckpoint', not 'domainsnapshot'", e.Message);
    }

    [Fact]
    public void UnknownRoot_ForValidate_IsRefused()
    {
        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate("<domstatus/>", cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(DocumentErrorReason.UnexpectedRoot, e.Reason);
        Assert.Contains("'domstatus'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NamespacedRoot_IsNotLibvirts()
        => Assert.Equal(DocumentErrorReason.UnexpectedRoot, Assert.Throws<DocumentException>(() => DocumentValidator.Validate("<domainbackup xmlns='urn:x'/>", cancellationToken: TestContext.Current.CancellationToken)).Reason);

    [Fact]
    public void Dtd_WithEntityExpansion_IsRefusedNotExpanded()
    {
        const string laughs = """
            <?xml version="1.0"?>
            <!DOCTYPE domaincheckpoint [
              <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
              <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
              <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
            ]>
            <domaincheckpoint><description>&c;</description></domaincheckpoint>
            """;

        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse(laughs, CheckpointParseMode.Create));

        Assert.Equal(DocumentErrorReason.DtdProhibited, e.Reason);
        Assert.Contains("line 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dtd_ExternalEntity_IsRefused()
    {
        const string external = "<!DOCTYPE domainbackup SYSTEM \"file:///etc/passwd\"><domainbackup/>";

        Assert.Equal(DocumentErrorReason.DtdProhibited, Assert.Throws<DocumentException>(() => BackupParser.Parse(external)).Reason);
    }

    [Fact]
    public void UndeclaredEntity_IsMalformed()
        => Assert.Equal(DocumentErrorReason.MalformedXml, Assert.Throws<DocumentException>(() => DocumentValidator.Validate("<domaincheckpoint><name>&x;</name></domaincheckpoint>", cancellationToken: TestContext.Current.CancellationToken)).Reason);

    [Fact]
    public void HugeDocument_OverTheLimit_IsRefusedBeforeParsing()
    {
        var huge = "<domaincheckpoint><description>" + new string('x', XmlDocumentLoader.MaxDocumentChars) + "</description></domaincheckpoint>";

        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate(huge, "huge.xml", cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(DocumentErrorReason.DocumentTooLarge, e.Reason);
        Assert.Contains("limit of 10485760", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LargeDocument_JustUnderTheLimit_IsRead()
    {
        const string head = "<domaincheckpoint><description>", tail = "</description></domaincheckpoint>";
        var text = head + new string('x', XmlDocumentLoader.MaxDocumentChars - head.Length - tail.Length) + tail;

        Assert.Equal(DocumentKind.Checkpoint, DocumentValidator.Validate(text, cancellationToken: TestContext.Current.CancellationToken));
    }

    [Fact]
    public void DeepNesting_OverTheLimit_IsRefused()
    {
        var depth = 1_000_000;
        var deep = "<domain type='kvm'><name>d</name><devices>" + string.Concat(Enumerable.Repeat("<x>", depth)) + string.Concat(Enumerable.Repeat("</x>", depth)) + "</devices></domain>";

        var e = Assert.Throws<DocumentException>(() => DomainParser.Parse(deep, cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(DocumentErrorReason.MalformedXml, e.Reason);
        Assert.Contains("elements nest deeper than 256 levels", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DeepNesting_AtTheLimit_IsRead()
    {
        var depth = XmlDocumentLoader.MaxDepth - 1;
        var text = "<domainbackup>" + string.Concat(Enumerable.Repeat("<x>", depth - 1)) + string.Concat(Enumerable.Repeat("</x>", depth - 1)) + "</domainbackup>";

        Assert.Equal(DocumentErrorReason.SchemaViolation, Assert.Throws<DocumentException>(() => DocumentValidator.Validate(text, cancellationToken: TestContext.Current.CancellationToken)).Reason);
    }

    [Theory]
    [InlineData("<domaincheckpoint><name>.hidden</name></domaincheckpoint>", "element 'name': value '.hidden' is not a valid checkpoint name")]
    [InlineData("<domaincheckpoint><name>a b</name></domaincheckpoint>", "element 'name': value 'a b' is not a valid checkpoint name")]
    [InlineData("<domaincheckpoint><parent><name>x/y</name></parent></domaincheckpoint>", "element 'name': value 'x/y' is not a valid checkpoint name")]
    [InlineData("<domaincheckpoint><creationTime>-1</creationTime></domaincheckpoint>", "element 'creationTime': value '-1' is not a valid unsignedLong")]
    [InlineData("<domaincheckpoint><disks><disk name='eth0'/></disks></domaincheckpoint>", "element 'disk': attribute 'name': value 'eth0' is not a valid disk target name or absolute path")]
    [InlineData("<domaincheckpoint><disks><disk name='vda' checkpoint='maybe'/></disks></domaincheckpoint>", "element 'disk': attribute 'checkpoint': value 'maybe' is not one of 'no', 'bitmap'")]
    [InlineData("<domaincheckpoint><disks><disk name='vda' checkpoint='no' bitmap='b'/></disks></domaincheckpoint>", "element 'disk': attribute 'bitmap': not allowed with checkpoint='no'")]
    [InlineData("<domaincheckpoint><disks/></domaincheckpoint>", "element 'disks': needs at least one <disk>")]
    [InlineData("<domaincheckpoint><name>a</name><name>b</name></domaincheckpoint>", "element 'name': element may appear only once in <domaincheckpoint>")]
    [InlineData("<domaincheckpoint id='1'/>", "element 'domaincheckpoint': attribute 'id': attribute not allowed here")]
    [InlineData("<domaincheckpoint><active>1</active></domaincheckpoint>", "element 'active': element not allowed in <domaincheckpoint>")]
    [InlineData("<domaincheckpoint>text</domaincheckpoint>", "element 'domaincheckpoint': text not allowed here")]
    [InlineData("<domainbackup mode='pull'/>", "element 'domainbackup': missing required element <server> (a pull backup needs one)")]
    [InlineData("<domainbackup mode='both'/>", "element 'domainbackup': attribute 'mode': value 'both' is not one of 'push', 'pull'")]
    [InlineData("<domainbackup><server name='h' port='1'/></domainbackup>", "element 'server': allowed only with mode='pull'")]
    [InlineData("<domainbackup mode='pull'><server name='h' port='x1'/></domainbackup>", "element 'server': attribute 'port': value 'x1' is not a valid unsignedInt")]
    [InlineData("<domainbackup mode='pull'><server name='bad host'/></domainbackup>", "element 'server': attribute 'name': value 'bad host' is not a valid DNS name or IP address")]
    [InlineData("<domainbackup mode='pull'><server transport='unix' socket='rel/sock'/></domainbackup>", "element 'server': attribute 'socket': value 'rel/sock' is not a valid absolute path")]
    [InlineData("<domainbackup mode='pull'><server transport='unix' socket='/s' port='1'/></domainbackup>", "element 'server': attribute 'port': not allowed with transport 'unix'")]
    [InlineData("<domainbackup mode='pull'><server name='h' tls='maybe'/></domainbackup>", "element 'server': attribute 'tls': value 'maybe' is not one of 'yes', 'no'")]
    [InlineData("<domainbackup mode='pull'><server transport='rdma' name='h'/></domainbackup>", "element 'server': attribute 'transport': value 'rdma' is not one of 'tcp', 'unix', 'fd'")]
    [InlineData("<domainbackup><disks><disk name='vda'><target file='/t'/></disk></disks></domainbackup>", "element 'target': needs type='file' or type='block' on the disk")]
    [InlineData("<domainbackup><disks><disk name='vda' type='file'><target file='relative'/></disk></disks></domainbackup>", "element 'target': attribute 'file': value 'relative' is not a valid absolute path")]
    [InlineData("<domainbackup><disks><disk name='vda' backup='perhaps'/></disks></domainbackup>", "element 'disk': attribute 'backup': value 'perhaps' is not one of 'yes', 'no'")]
    [InlineData("<domainbackup><disks><disk name='vda' backupmode='full' incremental='c1'/></disks></domainbackup>", "element 'disk': attribute 'incremental': not allowed with backupmode='full'")]
    [InlineData("<domainbackup><disks><disk name='vda' type='file'><driver type='vmdk2'/></disk></disks></domainbackup>", "element 'driver': attribute 'type': value 'vmdk2' is not one of")]
    [InlineData("<domainbackup mode='pull'><server name='h'/><disks><disk name='vda' type='file'><scratch file='/s'/><driver type='raw'/></disk></disks></domainbackup>", "element 'driver': attribute 'type': value 'raw' is not one of 'qcow2'")]
    [InlineData("<domainbackup mode='pull'><server name='h'/><disks><disk name='vda' type='block'/></disks></domainbackup>", "element 'disk': missing required element <scratch>")]
    [InlineData("<domainbackup><disks><disk name='vda' type='file'><target file='/t'><encryption format='luks'/></target></disk></disks></domainbackup>", "element 'encryption': missing required element <secret>")]
    [InlineData("<domainbackup><disks><disk name='vda' type='file'><target file='/t'><seclabel/></target></disk></disks></domainbackup>", "element 'seclabel': needs relabel='no', labelskip='yes' or a <label>")]
    [InlineData("<domain type='kvm'><name>d</name><uuid>nope</uuid></domain>", "element 'uuid': value 'nope' is not a valid UUID")]
    [InlineData("<domain type='kvm'><name>d</name><devices><disk><target dev='eth0'/></disk></devices></domain>", "element 'target': attribute 'dev': value 'eth0' is not a valid disk target name")]
    [InlineData("<domain type='kvm'><name>d</name><devices><disk type='file'><source file='img'/><target dev='vda'/></disk></devices></domain>", "element 'source': attribute 'file': value 'img' is not a valid absolute path")]
    [InlineData("<domain type='kvm'><name>d</name><devices><disk type='floppy'><target dev='vda'/></disk></devices></domain>", "element 'disk': attribute 'type': value 'floppy' is not one of")]
    [InlineData("<domain type='kvm'><devices/></domain>", "element 'domain': missing required element <name>")]
    [InlineData("<domain><name>d</name></domain>", "element 'domain': missing required attribute 'type'")]
    public void SchemaViolation_NamesElementAndAttribute(string xml, string problem)
    {
        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate(xml, cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(DocumentErrorReason.SchemaViolation, e.Reason);
        Assert.Contains(e.Problems, p => p.StartsWith("line 1: " + problem, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("<domainbackup mode='pull'><server name='h' port='70000'/></domainbackup>", DocumentErrorReason.InvalidPort, "internal error: port '70000' out of range")]
    [InlineData("<domainbackup mode=' pull '><server name='h'/></domainbackup>", DocumentErrorReason.UnknownBackupMode, "unsupported configuration: unknown backup mode ' pull '")]
    [InlineData("<domainbackup><disks><disk name='vda' type='file'><driver type='luks'/></disk></disks></domainbackup>", DocumentErrorReason.UnknownStoreFormat, "XML error: unknown storage source format 'luks'")]
    [InlineData("<domaincheckpoint><disks><disk name='vda' checkpoint=' no '/></disks></domaincheckpoint>", DocumentErrorReason.InvalidAttribute, "XML error: Invalid value for attribute 'checkpoint' in element 'disk': ' no '.")]
    public void ParserRule_BeyondTheSchema_UsesLibvirtText(string xml, DocumentErrorReason reason, string message)
    {
        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate(xml, cancellationToken: TestContext.Current.CancellationToken));

        Assert.Equal(reason, e.Reason);
        Assert.Equal(message, e.Message);
    }

    [Theory]
    [InlineData("<domainbackup mode='pull'><server transport='rdma' name='h'/></domainbackup>", "unsupported configuration: transport rdma is not supported for <server>")]
    [InlineData("<domainbackup mode='pull'><server transport='unix' socket='rel'/></domainbackup>", "XML error: backup socket path 'rel' must be absolute")]
    [InlineData("<domainbackup mode='pull'><server transport='unix'/></domainbackup>", "XML error: missing socket for unix transport")]
    [InlineData("<domainbackup mode='pull'><server socket='/s' name='h'/></domainbackup>", "XML error: transport 'tcp' does not support socket attribute")]
    [InlineData("<domainbackup mode='pull'><server/></domainbackup>", "XML error: missing name for host")]
    [InlineData("<domainbackup mode='pull'><server transport='fd'/></domainbackup>", "XML error: Missing required attribute 'fdgroup' in element 'server'")]
    [InlineData("<domainbackup mode='pull'><server name='h' port='p'/></domainbackup>", "internal error: failed to parse port number 'p'")]
    [InlineData("<domainbackup><server name='h'/></domainbackup>", "unsupported configuration: use of <server> requires pull mode backup")]
    [InlineData("<domainbackup mode='pull'><server name='h'/><disks><disk/></disks></domainbackup>", "XML error: missing name from disk backup element")]
    [InlineData("<domainbackup><disks><disk name='vda' state='running' type='network'/></disks></domainbackup>", "XML error: unsupported disk backup type 'network'")]
    [InlineData("<domainbackup><disks><disk name='vda' state='running' type='tape'/></disks></domainbackup>", "XML error: unknown storage source type 'tape'")]
    [InlineData("<domainbackup><disks><disk name='vda'/></disks></domainbackup>", "XML error: Missing required attribute 'state' in element 'disk'")]
    [InlineData("<domainbackup><disks><disk name='vda' state='paused'/></disks></domainbackup>", "XML error: Invalid value for attribute 'state' in element 'disk': 'paused'.")]
    public void InternalForm_WithoutSchema_UsesLibvirtParserText(string xml, string message)
    {
        var e = Assert.Throws<DocumentException>(() => BackupParser.Parse(xml, BackupXmlMode.Internal));

        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Redefine_WithoutName_UsesLibvirtText()
        => Assert.Equal(
            "XML error: a redefined checkpoint must have a name",
            Assert.Throws<DocumentException>(() => CheckpointParser.Parse("<domaincheckpoint><creationTime>1</creationTime></domaincheckpoint>", CheckpointParseMode.Redefine)).Message);

    [Theory]
    [InlineData("<domaincheckpoint><name>c1</name></domaincheckpoint>")]
    [InlineData("<domaincheckpoint><name>c1</name><creationTime>18446744073709551615</creationTime></domaincheckpoint>")]
    public void Redefine_WithoutUsableCreationTime_UsesLibvirtText(string xml)
        => Assert.Equal(
            "internal error: missing creationTime from existing checkpoint",
            Assert.Throws<DocumentException>(() => CheckpointParser.Parse(xml, CheckpointParseMode.Redefine)).Message);

    [Fact]
    public void DomainName_WithNewline_IsRefused()
        => Assert.Equal(DocumentErrorReason.SchemaViolation, Assert.Throws<DocumentException>(() => DomainParser.Parse("<domain type='kvm'><name>a&#10;b</name></domain>", cancellationToken: TestContext.Current.CancellationToken)).Reason);
}
