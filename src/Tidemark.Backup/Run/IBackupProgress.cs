namespace Tidemark.Backup.Run;

/// <summary>
/// Receives each disk's progress during <c>backup run</c> or a restore: the bytes its copy will
/// read once the export's map (or the chain's allocation) is known, then the bytes of each chunk
/// read. Disks are copied in parallel and chunks over several connections or requests, so calls
/// come from any thread, at once.
/// </summary>
public interface IBackupProgress
{
    void Planned(string disk, long bytes);

    void Copied(string disk, long bytes);
}
