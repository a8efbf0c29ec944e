namespace Tidemark.Engine.Backups;

/// <summary>Where a backup job is in its life; <see cref="BackupJobStates"/> lists the moves between them.</summary>
public enum BackupJobPhase
{
    /// <summary>Stores created, the point in time fixed, copy-before-write armed; nothing copied by the job yet.</summary>
    Prepared,

    /// <summary>Push: the job copies. Pull: the NBD server serves the point-in-time views.</summary>
    Running,

    /// <summary>Aborted, or a disk failed: the job stops copying and serving and cleans up.</summary>
    Cancelling,

    /// <summary>Terminal. Push: every disk copied and its target kept. Pull: ended by abort without a failure.</summary>
    Completed,

    /// <summary>Terminal. A disk failed; created targets and scratch files are removed.</summary>
    Failed,

    /// <summary>Terminal. A push job was aborted; created targets are removed.</summary>
    Cancelled,
}

/// <summary>
/// The backup job's state graph in one place (libvirt's per-disk states and job termination,
/// spec §6.11). Each row is one allowed move and why it happens; any other move is a bug.
/// </summary>
internal static class BackupJobStates
{
    private static readonly (BackupJobPhase From, BackupJobPhase To, string Why)[] Moves =
    [
        (BackupJobPhase.Prepared, BackupJobPhase.Running, "Start: the domain's barrier has opened"),
        (BackupJobPhase.Prepared, BackupJobPhase.Cancelling, "abort before start (the domain could not finish the instant), or a copy aside failed"),
        (BackupJobPhase.Running, BackupJobPhase.Completed, "push: every disk's clusters are in its target, flushed and closed"),
        (BackupJobPhase.Running, BackupJobPhase.Failed, "push: every cluster was copied, but a target failed to close"),
        (BackupJobPhase.Running, BackupJobPhase.Cancelling, "abort, or a disk failed: the other disks are stopped too"),
        (BackupJobPhase.Cancelling, BackupJobPhase.Completed, "pull ended by abort without a failure: libvirt counts it completed"),
        (BackupJobPhase.Cancelling, BackupJobPhase.Cancelled, "push ended by abort, or any job ended by its domain's stop"),
        (BackupJobPhase.Cancelling, BackupJobPhase.Failed, "a disk failed (its first error is the job's)"),
    ];

    /// <summary>True for a phase the job never leaves.</summary>
    public static bool IsTerminal(BackupJobPhase phase) => phase is BackupJobPhase.Completed or BackupJobPhase.Failed or BackupJobPhase.Cancelled;

    /// <summary>True when the table allows <paramref name="from"/> → <paramref name="to"/>.</summary>
    public static bool Allows(BackupJobPhase from, BackupJobPhase to)
    {
        foreach (var move in Moves)
        {
            if (move.From == from && move.To == to)
            {
                return true;
            }
        }

        return false;
    }
}
