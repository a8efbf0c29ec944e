namespace Tidemark.Formats.Domains;

/// <summary>One <c>&lt;disk&gt;</c> of a domain, as far as checkpoints and backups need it.</summary>
/// <param name="Type">The source type (<c>type=</c>; file when absent).</param>
/// <param name="Device">What the guest sees (<c>device=</c>; disk when absent).</param>
/// <param name="DriverName">&lt;driver name=&gt;, e.g. qemu.</param>
/// <param name="DriverType">&lt;driver type=&gt;, the image format, e.g. qcow2 or raw.</param>
/// <param name="SourcePath">The file, device or directory of &lt;source&gt;; null when the drive has no media.</param>
/// <param name="TargetDev">&lt;target dev=&gt;: the disk's name in checkpoints and backups.</param>
/// <param name="TargetBus">&lt;target bus=&gt;.</param>
/// <param name="ReadOnly">&lt;readonly/&gt; is present.</param>
/// <param name="BackingStore">The first &lt;backingStore&gt; of the chain, if the document names one.</param>
/// <param name="Shareable">&lt;shareable/&gt; is present: other domains may write the image at the same time.</param>
/// <param name="Sliced">The source names &lt;slices&gt;: the guest sees a part of the file only.</param>
/// <param name="ErrorPolicy">&lt;driver error_policy=&gt;: stop, report, ignore or enospace; null when absent.</param>
/// <param name="ReadErrorPolicy">&lt;driver rerror_policy=&gt;: stop, report or ignore; null when absent.</param>
/// <param name="CopyOnRead">&lt;driver copy_on_read='on'&gt;: what guest reads find only below the top image is copied into it.</param>
public sealed record DomainDisk(
    DiskSourceType Type,
    DiskDevice Device,
    string? DriverName,
    string? DriverType,
    string? SourcePath,
    string TargetDev,
    string? TargetBus,
    bool ReadOnly,
    DomainBackingStore? BackingStore = null,
    bool Shareable = false,
    bool Sliced = false,
    string? ErrorPolicy = null,
    string? ReadErrorPolicy = null,
    bool CopyOnRead = false)
{
    /// <summary>
    /// No media (libvirt <c>virStorageSourceIsEmpty</c>): a local source (file, block device or
    /// directory) without a path. Network, volume, NVMe and vhost sources always count as present.
    /// </summary>
    public bool IsEmpty => Type is DiskSourceType.File or DiskSourceType.Block or DiskSourceType.Dir && SourcePath is null;
}

/// <summary>One layer of a disk's <c>&lt;backingStore&gt;</c> chain.</summary>
/// <param name="Type">The layer's source type; null for the terminating empty <c>&lt;backingStore/&gt;</c>.</param>
/// <param name="Format">&lt;format type=&gt;.</param>
/// <param name="SourcePath">The layer's file or device.</param>
/// <param name="Next">The layer below, if any.</param>
public sealed record DomainBackingStore(DiskSourceType? Type, string? Format, string? SourcePath, DomainBackingStore? Next);

/// <summary>A disk's source type (<c>&lt;disk type=&gt;</c>).</summary>
public enum DiskSourceType
{
    File,
    Block,
    Dir,
    Network,
    Volume,
    Nvme,
    VhostUser,
    VhostVdpa,
}

/// <summary>A disk's device kind (<c>&lt;disk device=&gt;</c>).</summary>
public enum DiskDevice
{
    Disk,
    Cdrom,
    Floppy,
    Lun,
}

/// <summary>The XML names of the domain disk enums, one table each.</summary>
public static class DomainDiskNames
{
    internal static readonly Xml.XmlEnumTable<DiskSourceType> SourceTypes = new(
        (DiskSourceType.File, "file"),
        (DiskSourceType.Block, "block"),
        (DiskSourceType.Dir, "dir"),
        (DiskSourceType.Network, "network"),
        (DiskSourceType.Volume, "volume"),
        (DiskSourceType.Nvme, "nvme"),
        (DiskSourceType.VhostUser, "vhostuser"),
        (DiskSourceType.VhostVdpa, "vhostvdpa"));

    internal static readonly Xml.XmlEnumTable<DiskDevice> Devices = new(
        (DiskDevice.Disk, "disk"),
        (DiskDevice.Cdrom, "cdrom"),
        (DiskDevice.Floppy, "floppy"),
        (DiskDevice.Lun, "lun"));

    /// <summary>The XML name of <paramref name="type"/>.</summary>
    public static string Of(DiskSourceType type) => SourceTypes.ToXml(type);

    /// <summary>The XML name of <paramref name="device"/>.</summary>
    public static string Of(DiskDevice device) => Devices.ToXml(device);
}
