using Tidemark.Formats.Backups;

namespace Tidemark.Engine.Backups;

/// <summary>
/// A backup job's statistics, as <c>virDomainGetJobStats</c> reports them for a running job and,
/// once it has ended, for the completed one (spec §4.4).
/// </summary>
/// <param name="Mode">Push or pull.</param>
/// <param name="Phase">Where the job is; a terminal phase for the completed job's statistics.</param>
/// <param name="BytesProcessed">Push (<c>disk_processed</c>): bytes in the targets, copied by the job or before guest writes, plus the holes a full push leaves (counted from the start).</param>
/// <param name="BytesTotal">Push (<c>disk_total</c>): fixed at the instant: an incremental disk's dirty bytes, a full disk's whole size (as QEMU's backup job counts).</param>
/// <param name="ScratchBytesInUse">Pull (<c>disk_temp_used</c>): old content copied into the scratch files.</param>
/// <param name="ScratchBytesTotal">Pull (<c>disk_temp_total</c>): the scratch files' virtual size.</param>
/// <param name="Elapsed">Time since the job was prepared (<c>time_elapsed</c>).</param>
/// <param name="ErrorMessage">The first error of a disk (<c>errmsg</c>), or null.</param>
public sealed record BackupJobInfo(
    BackupMode Mode,
    BackupJobPhase Phase,
    long BytesProcessed,
    long BytesTotal,
    long ScratchBytesInUse,
    long ScratchBytesTotal,
    TimeSpan Elapsed,
    string? ErrorMessage)
{
    /// <summary>The completed statistics' <c>success</c>.</summary>
    public bool Success => Phase == BackupJobPhase.Completed;

    /// <summary><c>disk_remaining</c>.</summary>
    public long BytesRemaining => BytesTotal - BytesProcessed;
}
