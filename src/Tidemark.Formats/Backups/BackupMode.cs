using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>How a backup delivers its data (<c>&lt;domainbackup mode=&gt;</c>; push when absent).</summary>
public enum BackupMode
{
    /// <summary>Tidemark writes each disk into a target image.</summary>
    Push,

    /// <summary>Tidemark serves each disk's point-in-time view over NBD.</summary>
    Pull,
}

/// <summary>Per-disk choice of full or incremental copy (<c>backupmode=</c>).</summary>
public enum BackupDiskMode
{
    /// <summary>Not given; alignment decides (spec §3.3 step 5).</summary>
    Default,

    Full,

    Incremental,
}

/// <summary>A disk's job state, kept only in status XML (spec §3.1).</summary>
public enum BackupDiskState
{
    /// <summary>No state recorded.</summary>
    None,

    Running,
    Complete,
    Failed,
    Cancelling,
    Cancelled,
}

/// <summary>The XML names of the backup enums, one table each.</summary>
public static class BackupNames
{
    internal static readonly XmlEnumTable<BackupMode> Modes = new(
        (BackupMode.Push, "push"),
        (BackupMode.Pull, "pull"));

    internal static readonly XmlEnumTable<BackupDiskMode> DiskModes = new(
        (BackupDiskMode.Full, "full"),
        (BackupDiskMode.Incremental, "incremental"));

    internal static readonly XmlEnumTable<BackupDiskState> States = new(
        (BackupDiskState.Running, "running"),
        (BackupDiskState.Complete, "complete"),
        (BackupDiskState.Failed, "failed"),
        (BackupDiskState.Cancelling, "cancelling"),
        (BackupDiskState.Cancelled, "cancelled"));

    internal static readonly XmlEnumTable<ServerTransport> Transports = new(
        (ServerTransport.Tcp, "tcp"),
        (ServerTransport.Unix, "unix"),
        (ServerTransport.Rdma, "rdma"),
        (ServerTransport.Fd, "fd"));

    internal static readonly XmlEnumTable<StoreType> StoreTypes = new(
        (StoreType.File, "file"),
        (StoreType.Block, "block"));

    /// <summary>The XML name of <paramref name="mode"/>.</summary>
    public static string Of(BackupMode mode) => Modes.ToXml(mode);

    /// <summary>The XML name of <paramref name="mode"/>.</summary>
    public static string Of(BackupDiskMode mode) => DiskModes.ToXml(mode);

    /// <summary>The XML name of <paramref name="state"/>.</summary>
    public static string Of(BackupDiskState state) => States.ToXml(state);

    /// <summary>The XML name of <paramref name="transport"/>.</summary>
    public static string Of(ServerTransport transport) => Transports.ToXml(transport);

    /// <summary>The XML name of <paramref name="type"/>.</summary>
    public static string Of(StoreType type) => StoreTypes.ToXml(type);
}
