namespace Tidemark.Formats.Backups;

/// <summary>One <c>&lt;disk&gt;</c> of a backup (spec §3.1).</summary>
/// <param name="Name">The domain disk's target dev.</param>
/// <param name="Backup">backup='yes' (the default) or 'no'. A disk that is not backed up has nothing else.</param>
/// <param name="State">Status XML only: the disk's job state.</param>
/// <param name="Mode">backupmode=, or <see cref="BackupDiskMode.Default"/> before alignment.</param>
/// <param name="Incremental">incremental=: this disk's base checkpoint.</param>
/// <param name="ExportName">Pull: the NBD export name (engine default: the target).</param>
/// <param name="ExportBitmap">Pull: the dirty bitmap offered over NBD (engine default: backup-&lt;target&gt;).</param>
/// <param name="Store">The target (push) or scratch (pull); null for a disk not backed up.</param>
public sealed record BackupDisk(
    string Name,
    bool Backup,
    BackupDiskState State = BackupDiskState.None,
    BackupDiskMode Mode = BackupDiskMode.Default,
    string? Incremental = null,
    string? ExportName = null,
    string? ExportBitmap = null,
    BackupStore? Store = null)
{
    /// <summary>A disk left out of the backup: <c>&lt;disk name='X' backup='no'/&gt;</c>.</summary>
    public static BackupDisk Excluded(string name) => new(name, Backup: false);
}
