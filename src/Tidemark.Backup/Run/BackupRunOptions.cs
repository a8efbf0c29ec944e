using Tidemark.Backup.Repository;

namespace Tidemark.Backup.Run;

/// <summary>The level asked of <c>backup run</c>.</summary>
public enum LevelRequest
{
    /// <summary>Per disk: an incremental where the chain is usable, else a full (with the reason).</summary>
    Auto,

    /// <summary>A full of every disk (a new chain).</summary>
    Full,

    /// <summary>An incremental of every disk; refused where the chain is not usable.</summary>
    Incremental,
}

/// <summary>What <see cref="BackupRunner"/> backs up, where, and how.</summary>
public sealed record BackupRunOptions
{
    public required string Domain { get; init; }

    public required BackupRepository Repository { get; init; }

    /// <summary>A libvirt URI (<c>qemu:///system</c>, <c>qemu+unix:///system?socket=PATH</c>).</summary>
    public required string ConnectionUri { get; init; }

    public LevelRequest Level { get; init; } = LevelRequest.Auto;

    /// <summary>Disk targets to back up; empty for every qcow2 disk of the domain.</summary>
    public IReadOnlyList<string> Disks { get; init; } = [];

    /// <summary>Write zstd-compressed clusters (compression_type=zstd).</summary>
    public bool Compress { get; init; }

    /// <summary>NBD connections per disk.</summary>
    public int ConnectionsPerDisk { get; init; } = 4;

    /// <summary>Disks copied at once.</summary>
    public int ParallelDisks { get; init; } = 2;

    /// <summary>
    /// Where the job's NBD socket and scratch files go: a new directory under this one, which the
    /// host must be able to write (default: the system temporary directory; keep it short, a unix
    /// socket path is limited to 108 bytes, which a run refuses before it asks anything of the host).
    /// </summary>
    public string? WorkDirectory { get; init; }

    /// <summary>Receives one plain line per event (level decisions, repairs, disks done).</summary>
    public Action<string>? Report { get; init; }

    /// <summary>Receives each disk's bytes to copy and copied, for a progress display.</summary>
    public IBackupProgress? Progress { get; init; }
}
