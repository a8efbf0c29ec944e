using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Backups;

/// <summary>
/// Aligns a backup with its domain (spec §3.3, libvirt <c>virDomainBackupAlignDisks</c>): checks
/// the listed disks, generates missing store paths, appends the domain's other disks, and
/// settles each disk's full/incremental mode.
/// </summary>
public static class BackupAligner
{
    /// <summary>
    /// Aligns <paramref name="backup"/> with <paramref name="domain"/>. A generated store path is
    /// <c>&lt;disk source path&gt;.&lt;suffix&gt;</c>; the suffix is the name of the checkpoint created
    /// with the backup, or else the current Unix time.
    /// </summary>
    /// <exception cref="DocumentException">A domain without disks, an unknown or repeated disk, an
    /// incremental disk without a checkpoint, a store for an empty drive, or a path that cannot be generated.</exception>
    public static BackupDefinition Align(BackupDefinition backup, DomainDefinition domain, string suffix)
    {
        ArgumentNullException.ThrowIfNull(backup);
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentException.ThrowIfNullOrEmpty(suffix);
        if (domain.Disks.Count == 0)
        {
            throw new DocumentException(DocumentErrorReason.DomainWithoutDisks, "domain must have at least one disk to perform backup");
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var disks = new List<BackupDisk>(domain.Disks.Count);
        foreach (var disk in backup.Disks)
        {
            var domainDisk = domain.DiskByTarget(disk.Name)
                ?? throw new DocumentException(DocumentErrorReason.NoSuchDisk, $"no disk named '{disk.Name}'");
            if (!seen.Add(disk.Name))
            {
                throw new DocumentException(DocumentErrorReason.DiskSpecifiedTwice, $"disk '{disk.Name}' specified twice");
            }

            if (disk.Mode == BackupDiskMode.Incremental && disk.Incremental is null && backup.Incremental is null)
            {
                throw new DocumentException(
                    DocumentErrorReason.IncrementalWithoutCheckpoint,
                    $"'incremental' backup mode of disk '{disk.Name}' requires setting 'incremental' field for disk or backup");
            }

            disks.Add(disk.Backup ? disk with { Store = AssignStore(disk, domainDisk, suffix) } : disk);
        }

        // With no disks listed, every writable disk with media is backed up; otherwise the disks
        // left out are not. A listed read-only disk is not refused here (the engine decides).
        var backupAll = backup.Disks.Count == 0;
        foreach (var domainDisk in domain.Disks)
        {
            if (seen.Contains(domainDisk.TargetDev))
            {
                continue;
            }

            var disk = BackupDisk.Excluded(domainDisk.TargetDev);
            if (backupAll && !domainDisk.IsEmpty && !domainDisk.ReadOnly)
            {
                disk = disk with { Backup = true };
                disk = disk with { Store = AssignStore(disk, domainDisk, suffix) };
            }

            disks.Add(disk);
        }

        return backup with { Disks = disks.Select(d => SettleMode(d, backup.Incremental)).ToList() };
    }

    // libvirt virDomainBackupDefAssignStore.
    private static BackupStore AssignStore(BackupDisk disk, DomainDisk domainDisk, string suffix)
    {
        if (domainDisk.IsEmpty)
        {
            throw new DocumentException(DocumentErrorReason.DiskWithoutMedia, $"disk '{disk.Name}' has no media");
        }

        var store = disk.Store ?? BackupStore.At(StoreType.File, null);
        if (store.Path is not null)
        {
            return store;
        }

        if (domainDisk.Type != DiskSourceType.File)
        {
            throw new DocumentException(DocumentErrorReason.CannotGenerateStorePath, $"refusing to generate file name for disk '{disk.Name}'");
        }

        return store with { Type = StoreType.File, Path = $"{domainDisk.SourcePath}.{suffix}" };
    }

    // Spec §3.3 step 5: incremental when a base checkpoint is set at either level, else full;
    // an incremental disk without its own base inherits the backup's.
    private static BackupDisk SettleMode(BackupDisk disk, string? backupIncremental)
    {
        if (!disk.Backup)
        {
            return disk;
        }

        var mode = disk.Mode;
        if (mode == BackupDiskMode.Default)
        {
            mode = backupIncremental is not null || disk.Incremental is not null ? BackupDiskMode.Incremental : BackupDiskMode.Full;
        }

        var incremental = disk.Incremental ?? (mode == BackupDiskMode.Incremental ? backupIncremental : null);
        return disk with { Mode = mode, Incremental = incremental };
    }
}
