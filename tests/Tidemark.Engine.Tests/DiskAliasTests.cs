using Tidemark.Engine.Domains;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The aliases libvirt's QEMU driver gives a running domain's disks (qemuAssignDeviceDiskAlias,
/// virDomainDiskDefAssignAddress, virDiskNameToIndex); the differential test compares them with
/// a real libvirtd's for the common buses.
/// </summary>
public sealed class DiskAliasTests
{
    [Theory]
    [InlineData("vda", 0)]
    [InlineData("vdz", 25)]
    [InlineData("vdaa", 26)]
    [InlineData("vdab", 27)]
    [InlineData("sdba", 52)]
    [InlineData("hdc", 2)]
    [InlineData("xvdb", 1)]
    [InlineData("nvme0", 0)]
    public void NameToIndex_IsLibvirtsBase26(string name, int index) => Assert.Equal(index, DiskAliases.NameToIndex(name));

    [Fact]
    public void EachBus_NamesItsDisksAsLibvirtDoes()
    {
        var definition = DomainParser.Parse("""
            <domain type='kvm'><name>a</name><devices>
              <disk type='file' device='disk'><source file='/i/1'/><target dev='vda' bus='virtio'/></disk>
              <disk type='file' device='disk'><source file='/i/2'/><target dev='vdc'/></disk>
              <disk type='file' device='disk'><source file='/i/3'/><target dev='hdc' bus='ide'/></disk>
              <disk type='file' device='disk'><source file='/i/4'/><target dev='sdi' bus='scsi'/></disk>
              <disk type='file' device='disk'><source file='/i/5'/><target dev='sdb' bus='sata'/></disk>
              <disk type='file' device='disk'><source file='/i/6'/><target dev='sdc' bus='usb'/></disk>
              <disk type='file' device='disk'><source file='/i/7'/><target dev='vde' bus='virtio'/><alias name='ua-mine'/></disk>
              <disk type='file' device='disk'><source file='/i/8'/><target dev='vdf' bus='virtio'/><alias name='virtio-disk9'/></disk>
              <disk type='file' device='disk'><source file='/i/9'/><target dev='sdd' bus='scsi'/><address type='drive' controller='1' bus='0' target='0' unit='3'/></disk>
              <disk type='file' device='floppy'><source file='/i/10'/><target dev='fdb'/></disk>
            </devices></domain>
            """, cancellationToken: TestContext.Current.CancellationToken);

        string?[] expected = ["virtio-disk0", "virtio-disk2", "ide0-1-0", "scsi0-0-9", "sata0-0-1", "usb-disk2", "ua-mine", "virtio-disk5", "scsi1-0-3", "fdc0-0-1"];
        Assert.Equal(expected, definition.Disks.Select(d => DiskAliases.Of(definition, d.TargetDev)));
        Assert.Null(DiskAliases.Of(definition, "vdz"));
        Assert.Equal("sdd", DiskAliases.TargetOf(definition, "scsi1-0-3"));
        Assert.Null(DiskAliases.TargetOf(definition, "scsi0-0-3"));
    }

    [Fact]
    public void ANonLsiScsiController_PutsTheTargetInTheAlias()
    {
        var definition = DomainParser.Parse("""
            <domain type='kvm'><name>a</name><devices>
              <disk type='file' device='disk'><source file='/i/1'/><target dev='sdb' bus='scsi'/></disk>
              <controller type='scsi' index='0' model='virtio-scsi'/>
            </devices></domain>
            """, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("scsi0-0-0-1", DiskAliases.Of(definition, "sdb"));
    }

    [Fact]
    public void TheRunningDomainsXml_HasEachAlias_BeforeTheAddress()
    {
        var definition = DomainParser.Parse("""
            <domain type='kvm'><name>a</name><devices>
              <disk type='file' device='disk'><source file='/i/1'/><target dev='vdb' bus='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>
              <disk type='file' device='disk'><source file='/i/2'/><target dev='vdc' bus='virtio'/><alias name='ua-c'/></disk>
            </devices></domain>
            """, cancellationToken: TestContext.Current.CancellationToken);
        var disks = DiskAliases.WithAliases(definition).Element("devices")!.Elements("disk").ToList();
        Assert.Equal(["source", "target", "alias", "address"], disks[0].Elements().Select(e => e.Name.LocalName));
        Assert.Equal("virtio-disk1", disks[0].Element("alias")!.Attribute("name")!.Value);
        Assert.Equal("ua-c", disks[1].Element("alias")!.Attribute("name")!.Value);
        Assert.Single(disks[1].Elements("alias"));
    }
}
