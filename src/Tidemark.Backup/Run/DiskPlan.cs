using Tidemark.Backup.Repository;

namespace Tidemark.Backup.Run;

/// <summary>The level chosen for one disk of a backup, and why.</summary>
/// <param name="Disk">The disk target.</param>
/// <param name="Level">Full or incremental.</param>
/// <param name="Reason">Why (for a full under <c>auto</c>: why the chain could not continue).</param>
/// <param name="Previous">The disk's last backup in the repository (its chain file backs an incremental).</param>
/// <param name="PreviousCheckpoint">The checkpoint of <paramref name="Previous"/>: an incremental's base.</param>
internal sealed record DiskPlan(string Disk, BackupLevel Level, string Reason, DiskManifest? Previous, string? PreviousCheckpoint)
{
    public DiskPlan AsFull(string reason) => this with { Level = BackupLevel.Full, Reason = reason };
}
