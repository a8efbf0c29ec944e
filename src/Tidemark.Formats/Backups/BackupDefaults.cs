namespace Tidemark.Formats.Backups;

/// <summary>
/// The defaults the engine fills into an aligned backup before it starts, as libvirt's qemu
/// driver does, and which <c>virDomainBackupGetXMLDesc</c> then shows (spec §3.4, §8): store
/// format qcow2, pull export name = the disk target, export bitmap = <c>backup-&lt;target&gt;</c>
/// for incremental disks, and a store index per disk.
/// </summary>
public static class BackupDefaults
{
    /// <summary>The prefix of the temporary bitmap a backup exports or merges into (spec §8).</summary>
    public const string ExportBitmapPrefix = "backup-";

    /// <summary>
    /// Applies the driver defaults to an aligned <paramref name="backup"/>.
    /// <paramref name="nextIndex"/> gives each backed-up disk's store its node index (libvirt's
    /// per-domain node counter); null leaves indexes as they are.
    /// </summary>
    /// <exception cref="DocumentException">A TCP server without a port, or a pull disk whose scratch is not qcow2.</exception>
    public static BackupDefinition Apply(BackupDefinition backup, Func<uint>? nextIndex = null)
    {
        ArgumentNullException.ThrowIfNull(backup);
        if (backup.Mode == BackupMode.Pull && backup.Server is { Transport: ServerTransport.Tcp, Port: 0 })
        {
            throw new DocumentException(DocumentErrorReason.TcpPortRequired, "<domainbackup> must specify TCP port for now");
        }

        var disks = new List<BackupDisk>(backup.Disks.Count);
        foreach (var disk in backup.Disks)
        {
            if (!disk.Backup || disk.Store is null)
            {
                disks.Add(disk);
                continue;
            }

            var store = disk.Store with
            {
                Format = disk.Store.Format ?? StorageFormat.Qcow2,
                Index = nextIndex is null ? disk.Store.Index : nextIndex(),
            };
            if (backup.Mode == BackupMode.Pull && store.Format != StorageFormat.Qcow2)
            {
                throw new DocumentException(DocumentErrorReason.PullRequiresQcow2, $"pull mode backup for disk '{disk.Name}' requires qcow2 driver");
            }

            var pull = backup.Mode == BackupMode.Pull;
            var incremental = disk.Mode == BackupDiskMode.Incremental;
            disks.Add(disk with
            {
                Store = store,
                ExportName = pull ? disk.ExportName ?? disk.Name : disk.ExportName,
                ExportBitmap = pull && incremental ? disk.ExportBitmap ?? ExportBitmapPrefix + disk.Name : disk.ExportBitmap,
            });
        }

        return backup with { Disks = disks };
    }
}
