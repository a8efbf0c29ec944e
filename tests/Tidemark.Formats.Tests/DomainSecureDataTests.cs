using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Tests;

/// <summary>
/// A domain's secure data (<see cref="DomainSecureData"/>): graphics passwords and a network
/// source's cookies, a backing store's included, are written only when asked for, in a domain
/// document and in a checkpoint's embedded domain; everything else is written either way.
/// </summary>
public sealed class DomainSecureDataTests
{
    private const string Domain = """
        <domain type='kvm'>
          <name>web</name>
          <memory unit='KiB'>65536</memory>
          <devices>
            <disk type='network' device='cdrom'>
              <driver name='qemu' type='raw'/>
              <source protocol='https' name='/boot.iso'>
                <host name='example.com' port='443'/>
                <cookies>
                  <cookie name='session'>abc123</cookie>
                </cookies>
              </source>
              <backingStore type='network' index='1'>
                <format type='raw'/>
                <source protocol='http' name='/base.iso'>
                  <host name='example.com' port='80'/>
                  <cookies>
                    <cookie name='token'>def456</cookie>
                  </cookies>
                </source>
                <backingStore/>
              </backingStore>
              <target dev='sdb' bus='scsi'/>
              <readonly/>
            </disk>
            <graphics type='vnc' port='-1' autoport='yes' passwd='vnc-secret' passwdValidTo='2030-01-01T00:00:00'>
              <listen type='address' address='127.0.0.1'/>
            </graphics>
            <graphics type='spice' autoport='yes' passwd='spice-secret' connected='keep'/>
          </devices>
        </domain>

        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Secure_WritesEverything()
    {
        var text = DomainFormatter.Format(DomainParser.Parse(Domain, cancellationToken: Ct), DomainFormatFlags.Secure);

        Assert.Equal(Domain, text);
    }

    [Fact]
    public void WithoutSecure_LeavesOutPasswordsAndCookies_AndNothingElse()
    {
        var definition = DomainParser.Parse(Domain, cancellationToken: Ct);

        var text = DomainFormatter.Format(definition, DomainFormatFlags.None);

        var expected = Domain
            .Replace(" passwd='vnc-secret'", "", StringComparison.Ordinal)
            .Replace(" passwd='spice-secret'", "", StringComparison.Ordinal)
            .Replace("        <cookies>\n          <cookie name='session'>abc123</cookie>\n        </cookies>\n", "", StringComparison.Ordinal)
            .Replace("          <cookies>\n            <cookie name='token'>def456</cookie>\n          </cookies>\n", "", StringComparison.Ordinal);
        Assert.Equal(expected, text);
        Assert.DoesNotContain("secret", text, StringComparison.Ordinal);
        Assert.DoesNotContain("abc123", text, StringComparison.Ordinal);
        Assert.DoesNotContain("def456", text, StringComparison.Ordinal);

        // The definition itself keeps them: the files Tidemark writes are secure.
        Assert.True(DomainSecureData.Any(definition.Element));
    }

    [Fact]
    public void ADomainWithoutSecureData_IsWrittenTheSameEitherWay()
    {
        var plain = DomainParser.Parse("<domain type='kvm'><name>p</name><devices><graphics type='vnc' port='5900'/></devices></domain>", cancellationToken: Ct);

        Assert.False(DomainSecureData.Any(plain.Element));
        Assert.Same(plain.Element, DomainSecureData.Without(plain.Element));
        Assert.Equal(DomainFormatter.Format(plain, DomainFormatFlags.Secure), DomainFormatter.Format(plain, DomainFormatFlags.None));
    }

    [Fact]
    public void CheckpointsEmbeddedDomain_HasItsSecureDataOnlyWithSecure()
    {
        var checkpoint = new CheckpointDefinition("c1", null, null, 1, [new CheckpointDisk("sdb", CheckpointType.No, null)], DomainParser.Parse(Domain, cancellationToken: Ct));

        var secure = CheckpointFormatter.Format(checkpoint, CheckpointFormatFlags.Secure);
        var plain = CheckpointFormatter.Format(checkpoint, CheckpointFormatFlags.None);

        Assert.Contains("passwd='vnc-secret'", secure, StringComparison.Ordinal);
        Assert.Contains("<cookie name='token'>def456</cookie>", secure, StringComparison.Ordinal);
        Assert.DoesNotContain("passwd=", plain, StringComparison.Ordinal);
        Assert.DoesNotContain("<cookies>", plain, StringComparison.Ordinal);
        Assert.Contains("passwdValidTo='2030-01-01T00:00:00'", plain, StringComparison.Ordinal);
        Assert.Contains("connected='keep'", plain, StringComparison.Ordinal);
    }
}
