using System.Xml.Linq;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Disk alignment (spec §2.3, §3.3): every row of the error catalogues that alignment can raise,
/// with libvirt's text, and the defaults for disks the document leaves out.
/// </summary>
public sealed class AlignmentTests
{
    // vda, vdb: writable qcow2 files; sdc: read-only cdrom with media; hdd: empty cdrom;
    // vde: a block device; vdf shares vda's source path.
    private const string DomainXml = """
        <domain type='kvm'>
          <name>vm</name>
          <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><source file='/img/c.iso'/><target dev='sdc' bus='sata'/><readonly/></disk>
            <disk type='file' device='cdrom'><target dev='hdd' bus='ide'/><readonly/></disk>
            <disk type='block' device='disk'><source dev='/dev/vg/e'/><target dev='vde' bus='virtio'/></disk>
          </devices>
        </domain>
        """;

    private static readonly DomainDefinition Domain = DomainParser.Parse(DomainXml);

    private static CheckpointDefinition Checkpoint(params CheckpointDisk[] disks) => new("c1", null, null, 1, disks);

    [Fact]
    public void Domain_ModelsTheDisks()
    {
        Assert.Equal(["vda", "vdb", "sdc", "hdd", "vde"], Domain.Disks.Select(d => d.TargetDev));
        Assert.Equal(("kvm", "vm", "c7a5fdbd-edaf-9455-926a-d65c16db1809"), (Domain.Type, Domain.Name, Domain.Uuid));
        Assert.True(Domain.Disks[2].ReadOnly);
        Assert.True(Domain.Disks[3].IsEmpty);
        Assert.Equal((DiskSourceType.Block, "/dev/vg/e"), (Domain.Disks[4].Type, Domain.Disks[4].SourcePath));
        Assert.Equal((DiskDevice.Cdrom, "sata"), (Domain.Disks[2].Device, Domain.Disks[2].TargetBus));
    }

    [Fact]
    public void Domain_VolumeAndNetworkDisks_HaveMedia()
    {
        var domain = DomainParser.Parse("""
            <domain type='kvm'>
              <name>d</name>
              <devices>
                <disk type='volume' device='disk'><source pool='default' volume='v1'/><target dev='vda'/></disk>
                <disk type='network' device='disk'><source protocol='nbd' name='export'/><target dev='vdb'/></disk>
                <disk type='block' device='disk'><target dev='vdc'/></disk>
              </devices>
            </domain>
            """, cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal([false, false, true], domain.Disks.Select(d => d.IsEmpty));
        Assert.Equal("export", domain.Disks[1].SourcePath);
    }

    [Fact]
    public void Checkpoint_WithoutDisks_BitmapsEveryWritableDiskWithMedia()
    {
        var aligned = CheckpointAligner.Align(Checkpoint(), Domain);

        Assert.Equal(
            ["vda bitmap c1", "vdb bitmap c1", "sdc no ", "hdd no ", "vde bitmap c1"],
            aligned.Disks.Select(d => $"{d.Name} {CheckpointTypeNames.Of(d.Type)} {d.Bitmap}"));
    }

    [Fact]
    public void Checkpoint_ListedByPath_BecomesTargetAndOthersGetNo()
    {
        var aligned = CheckpointAligner.Align(Checkpoint(new CheckpointDisk("/img/b.qcow2", CheckpointType.Bitmap, "mine")), Domain);

        Assert.Equal(
            ["vda no ", "vdb bitmap mine", "sdc no ", "hdd no ", "vde no "],
            aligned.Disks.Select(d => $"{d.Name} {CheckpointTypeNames.Of(d.Type)} {d.Bitmap}"));
    }

    [Fact]
    public void Checkpoint_ReadOnlyDiskWithCheckpointNo_IsAccepted()
        => Assert.Equal(CheckpointType.No, CheckpointAligner.Align(Checkpoint(new CheckpointDisk("sdc", CheckpointType.No)), Domain).Disks[2].Type);

    [Fact]
    public void Checkpoint_NoDomain_IsMissingDomain()
        => AssertRefused(() => CheckpointAligner.Align(Checkpoint(), null), DocumentErrorReason.MissingDomain, "internal error: missing domain in checkpoint");

    [Fact]
    public void Checkpoint_MoreDisksThanTheDomain_IsTooMany()
        => AssertRefused(
            () => CheckpointAligner.Align(Checkpoint([.. Enumerable.Range(0, 6).Select(i => new CheckpointDisk($"vd{(char)('a' + i)}", CheckpointType.Bitmap))]), Domain),
            DocumentErrorReason.TooManyDisks,
            "unsupported configuration: too many disk checkpoint requests for domain");

    [Fact]
    public void Checkpoint_DomainWithoutDisks_IsRefused()
        => AssertRefused(
            () => CheckpointAligner.Align(Checkpoint(), DomainParser.Parse("<domain type='kvm'><name>d</name></domain>")),
            DocumentErrorReason.DomainWithoutDisks,
            "unsupported configuration: domain must have at least one disk to perform checkpoints");

    [Fact]
    public void Checkpoint_UnknownDisk_IsNoDiskNamed()
        => AssertRefused(() => CheckpointAligner.Align(Checkpoint(new CheckpointDisk("vdz", CheckpointType.Bitmap)), Domain), DocumentErrorReason.NoSuchDisk, "unsupported configuration: no disk named 'vdz'");

    [Fact]
    public void Checkpoint_AmbiguousPath_IsNotFound()
    {
        var twice = DomainParser.Parse(DomainXml.Replace("<source dev='/dev/vg/e'/>", "<source dev='/img/a.qcow2'/>", StringComparison.Ordinal), cancellationToken: TestContext.Current.CancellationToken);

        AssertRefused(() => CheckpointAligner.Align(Checkpoint(new CheckpointDisk("/img/a.qcow2", CheckpointType.Bitmap)), twice), DocumentErrorReason.NoSuchDisk, "unsupported configuration: no disk named '/img/a.qcow2'");
    }

    [Fact]
    public void Checkpoint_SameDiskByTargetAndPath_IsSpecifiedTwice()
        => AssertRefused(
            () => CheckpointAligner.Align(Checkpoint(new CheckpointDisk("vda", CheckpointType.Bitmap), new CheckpointDisk("/img/a.qcow2", CheckpointType.No)), Domain),
            DocumentErrorReason.DiskSpecifiedTwice,
            "unsupported configuration: disk '/img/a.qcow2' specified twice");

    [Theory]
    [InlineData("sdc")]
    [InlineData("hdd")]
    public void Checkpoint_BitmapOnReadOnlyOrEmptyDisk_IsRefused(string disk)
        => AssertRefused(() => CheckpointAligner.Align(Checkpoint(new CheckpointDisk(disk, CheckpointType.Bitmap)), Domain), DocumentErrorReason.DiskEmptyOrReadOnly, $"unsupported configuration: disk '{disk}' is empty or readonly");

    [Fact]
    public void Backup_WithoutDisks_BacksUpEveryWritableDiskWithMedia()
    {
        var aligned = BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, []), FileOnly(), "S");

        Assert.Equal(
            ["vda yes Full /img/a.qcow2.S", "vdb yes Full /img/b.qcow2.S", "sdc no Default ", "hdd no Default "],
            aligned.Disks.Select(d => $"{d.Name} {(d.Backup ? "yes" : "no")} {d.Mode} {d.Store?.Path}"));
    }

    [Fact]
    public void Backup_ListedReadOnlyDisk_IsNotRefusedHere()
    {
        var aligned = BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("sdc", true)]), Domain, "S");

        Assert.Equal("/img/c.iso.S", aligned.Disks[0].Store!.Path);
        Assert.All(aligned.Disks.Skip(1), d => Assert.False(d.Backup));
    }

    [Fact]
    public void Backup_DomainWithoutDisks_IsRefused()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, []), DomainParser.Parse("<domain type='kvm'><name>d</name></domain>"), "S"),
            DocumentErrorReason.DomainWithoutDisks,
            "unsupported configuration: domain must have at least one disk to perform backup");

    [Fact]
    public void Backup_ByPath_IsNoDiskNamed()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("/img/a.qcow2", true)]), Domain, "S"),
            DocumentErrorReason.NoSuchDisk,
            "unsupported configuration: no disk named '/img/a.qcow2'");

    [Fact]
    public void Backup_SameDiskTwice_IsRefused()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("vda", true), BackupDisk.Excluded("vda")]), Domain, "S"),
            DocumentErrorReason.DiskSpecifiedTwice,
            "unsupported configuration: disk 'vda' specified twice");

    [Fact]
    public void Backup_IncrementalModeWithoutCheckpoint_IsRefused()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("vda", true, Mode: BackupDiskMode.Incremental)]), Domain, "S"),
            DocumentErrorReason.IncrementalWithoutCheckpoint,
            "unsupported configuration: 'incremental' backup mode of disk 'vda' requires setting 'incremental' field for disk or backup");

    [Fact]
    public void Backup_EmptyDrive_HasNoMedia()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("hdd", true)]), Domain, "S"),
            DocumentErrorReason.DiskWithoutMedia,
            "unsupported configuration: disk 'hdd' has no media");

    [Fact]
    public void Backup_BlockDiskWithoutTarget_CannotGenerateAName()
        => AssertRefused(
            () => BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [new BackupDisk("vde", true)]), Domain, "S"),
            DocumentErrorReason.CannotGenerateStorePath,
            "unsupported configuration: refusing to generate file name for disk 'vde'");

    [Fact]
    public void Backup_BlockStoreWithoutPath_BecomesAGeneratedFile()
    {
        var disk = new BackupDisk("vda", true, Store: BackupStore.At(StoreType.Block, null, StorageFormat.Raw));

        var aligned = BackupAligner.Align(new BackupDefinition(BackupMode.Push, null, null, [disk]), Domain, "S");

        Assert.Equal(BackupStore.At(StoreType.File, "/img/a.qcow2.S", StorageFormat.Raw), aligned.Disks[0].Store);
    }

    private static DomainDefinition FileOnly()
    {
        var root = XDocument.Parse(DomainXml).Root!;
        root.Descendants("disk").Single(d => d.Attribute("type")!.Value == "block").Remove();
        return DomainParser.Parse(root);
    }

    private static void AssertRefused(Action action, DocumentErrorReason reason, string message)
    {
        var e = Assert.Throws<DocumentException>(action);
        Assert.Equal((reason, message), (e.Reason, e.Message));
    }
}
