using System.Xml.Linq;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Tests;

/// <summary>The qemu driver's defaults on an aligned backup (spec §3.4, §8).</summary>
public sealed class BackupDefaultsTests
{
    private static readonly DomainDefinition Domain = DomainParser.Parse("""
        <domain type='kvm'>
          <name>vm</name>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/vm.qcow2'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><source file='/img/cd.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
          </devices>
        </domain>
        """);

    /// <summary>The worked example of spec §3.5: a push full backup of <c>&lt;domainbackup/&gt;</c>, suffix 1700000000, index 5.</summary>
    [Fact]
    public async Task PushFull_OfAnEmptyDocument_IsTheSpecsWorkedExample()
    {
        var aligned = BackupAligner.Align(BackupParser.Parse("<domainbackup/>"), Domain, "1700000000");

        var text = BackupFormatter.Format(BackupDefaults.Apply(aligned, () => 5));

        Assert.Equal(
            """
            <domainbackup mode='push'>
              <disks>
                <disk name='vda' backup='yes' type='file' backupmode='full' index='5'>
                  <driver type='qcow2'/>
                  <target file='/img/vm.qcow2.1700000000'/>
                </disk>
                <disk name='sda' backup='no'/>
              </disks>
            </domainbackup>

            """,
            text);

        // index= is output only: the public schema refuses it, as the spec warns.
        Assert.False((await Xmllint.ValidateAsync(text, "domainbackup.rng")).Valid);
        Assert.True((await Xmllint.ValidateAsync(text.Replace(" index='5'", string.Empty, StringComparison.Ordinal), "domainbackup.rng")).Valid);
    }

    [Fact]
    public void PullIncremental_GetsExportNameAndBitmapFromTheTarget()
    {
        var backup = BackupParser.Parse("<domainbackup mode='pull'><incremental>c1</incremental><server name='localhost' port='10809'/></domainbackup>");

        var disk = BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")).Disks[0];

        Assert.Equal(("vda", "backup-vda", StorageFormat.Qcow2, 0u), (disk.ExportName, disk.ExportBitmap, disk.Store!.Format, disk.Store.Index));
    }

    [Fact]
    public void PullFull_GetsNoExportBitmap_AndKeepsAGivenExportName()
    {
        var backup = BackupParser.Parse("<domainbackup mode='pull'><server name='localhost' port='10809'/><disks><disk name='vda' exportname='mine'/></disks></domainbackup>");

        var disk = BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")).Disks[0];

        Assert.Equal(("mine", (string?)null), (disk.ExportName, disk.ExportBitmap));
    }

    [Fact]
    public void PullOverTcpWithoutPort_IsRefused()
    {
        var backup = BackupParser.Parse("<domainbackup mode='pull'><server name='localhost'/></domainbackup>");

        var e = Assert.Throws<DocumentException>(() => BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")));

        Assert.Equal("Operation not supported: <domainbackup> must specify TCP port for now", e.Message);
    }

    [Fact]
    public void PullWithRawScratch_IsRefused()
    {
        var backup = new BackupDefinition(
            BackupMode.Pull,
            null,
            new BackupServer(ServerTransport.Unix, Socket: "/run/s"),
            [new BackupDisk("vda", true, Store: BackupStore.At(StoreType.File, "/s.raw", StorageFormat.Raw))]);

        var e = Assert.Throws<DocumentException>(() => BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")));

        Assert.Equal("unsupported configuration: pull mode backup for disk 'vda' requires qcow2 driver", e.Message);
    }

    [Fact]
    public void PushKeepsAGivenFormat_AndHasNoExports()
    {
        var backup = BackupParser.Parse("<domainbackup><disks><disk name='vda' type='file'><driver type='raw'/></disk></disks></domainbackup>");

        var disk = BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")).Disks[0];

        Assert.Equal((StorageFormat.Raw, (string?)null, (string?)null), (disk.Store!.Format, disk.ExportName, disk.ExportBitmap));
        Assert.NotNull(XDocument.Parse(BackupFormatter.Format(BackupDefaults.Apply(BackupAligner.Align(backup, Domain, "S")))).Root);
    }
}
