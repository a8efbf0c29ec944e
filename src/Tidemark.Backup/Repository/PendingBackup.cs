namespace Tidemark.Backup.Repository;

/// <summary>
/// A backup in progress, written (atomically) before the job begins on the host and removed
/// once the job has ended and, after a failure, its checkpoint is gone. Found by the next run,
/// it means the previous one died: that run ends the job if it is still on the host (the job
/// serves on <see cref="Socket"/>), deletes <see cref="Checkpoint"/> if it exists, and says so.
/// </summary>
public sealed record PendingBackup(string Domain, string Checkpoint, string Socket, string WorkDirectory, DateTimeOffset Started);
