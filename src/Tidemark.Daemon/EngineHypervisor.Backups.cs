using Microsoft.Extensions.Logging;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Formats.Backups;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;

namespace Tidemark.Daemon;

/// <summary>
/// Backup and job procedures (libvirt-rpc.md §5: 421, 422, 163, 298, 164, 442, 238) and the
/// JOB_COMPLETED event (363), over the domain's backup job.
/// </summary>
internal sealed partial class EngineHypervisor
{
    // virDomainJobOperation VIR_DOMAIN_JOB_OPERATION_BACKUP.
    private const int BackupOperation = 9;

    private const uint JobStatsCompleted = 1;
    private const uint JobStatsKeepCompleted = 2;

    public ValueTask BeginBackupAsync(RemoteDomain domain, string backupXml, string? checkpointXml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);

        // The job outlives the call: a client that hangs up must not cancel what it began.
        var backup = await found.BeginBackupAsync(backupXml, checkpointXml, (BackupBeginFlags)flags, cancellationToken).ConfigureAwait(false);
        _ = AnnounceWhenEndedAsync(backup);
    });

    /// <summary>
    /// Watches the backup jobs a previous daemon left running with their domains, so that
    /// their end is announced as a job begun here would be; call once <see cref="Events"/> is set.
    /// </summary>
    public void WatchCarriedBackups()
    {
        foreach (var domain in _host.ListDomains())
        {
            if (domain.Backup is { } backup)
            {
                _ = AnnounceWhenEndedAsync(backup);
            }
        }
    }

    public ValueTask<string> GetBackupXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, 0, "qemuDomainBackupGetXMLDesc");
        return Find(domain).GetBackupXml();
    });

    public ValueTask<JobInfo> GetJobInfoAsync(RemoteDomain domain, CancellationToken cancellationToken) => Call(() =>
    {
        if (Find(domain).Backup is not { } backup)
        {
            return JobInfo.None;
        }

        var info = backup.Job.Info;
        var (total, processed) = info.Mode == BackupMode.Push
            ? ((ulong)info.BytesTotal, (ulong)info.BytesProcessed)
            : ((ulong)info.ScratchBytesTotal, (ulong)info.ScratchBytesInUse);
        var remaining = total - Math.Min(total, processed);
        return new JobInfo(RunningType(info), Milliseconds(info), 0, total, processed, remaining, 0, 0, 0, total, processed, remaining);
    });

    public ValueTask<JobStats> GetJobStatsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, JobStatsCompleted | JobStatsKeepCompleted, "qemuDomainGetJobStats");
        var found = Find(domain);
        if ((flags & JobStatsCompleted) != 0)
        {
            return found.TakeCompletedBackupInfo(keep: (flags & JobStatsKeepCompleted) != 0) is { } completed
                ? new JobStats(CompletedType(completed), Statistics(completed, completed: true))
                : JobStats.None;
        }

        return found.Backup is { } backup && backup.Job.Info is var info
            ? new JobStats(RunningType(info), Statistics(info, completed: false))
            : JobStats.None;
    });

    public ValueTask AbortJobAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, 0, "qemuDomainAbortJobFlags");
        Find(domain).AbortBackup();
    });

    public ValueTask<BlockJobInfo?> GetBlockJobInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        var found = Find(domain);
        var disk = found.Definition.DiskByName(path)
            ?? throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"invalid path {path} not assigned to domain");
        if (found.Backup is not { } backup || !backup.Targets.Contains(disk.TargetDev))
        {
            return null;
        }

        // The job's progress, as each disk's backup block job reports the bytes copied of its own.
        var info = backup.Job.Info;
        return info.Mode == BackupMode.Push
            ? new BlockJobInfo(BlockJobType.Backup, 0, (ulong)info.BytesProcessed, (ulong)info.BytesTotal)
            : new BlockJobInfo(BlockJobType.Backup, 0, (ulong)info.ScratchBytesInUse, (ulong)info.ScratchBytesTotal);
    });

    /// <summary>The job statistics libvirt reports for a backup (spec rpc §5): the running or the completed ones.</summary>
    internal static IReadOnlyList<TypedParameter> Statistics(BackupJobInfo info, bool completed)
    {
        var list = new List<TypedParameter>
        {
            TypedParameter.Int("operation", BackupOperation),
            TypedParameter.ULLong("time_elapsed", Milliseconds(info)),
        };
        if (info.Mode == BackupMode.Push && (info.BytesTotal != 0 || info.BytesProcessed != 0))
        {
            list.Add(TypedParameter.ULLong("disk_total", (ulong)info.BytesTotal));
            list.Add(TypedParameter.ULLong("disk_processed", (ulong)info.BytesProcessed));
            list.Add(TypedParameter.ULLong("disk_remaining", (ulong)Math.Max(0, info.BytesRemaining)));
        }

        if (info.Mode == BackupMode.Pull && (info.ScratchBytesTotal != 0 || info.ScratchBytesInUse != 0))
        {
            list.Add(TypedParameter.ULLong("disk_temp_used", (ulong)info.ScratchBytesInUse));
            list.Add(TypedParameter.ULLong("disk_temp_total", (ulong)info.ScratchBytesTotal));
        }

        if (completed)
        {
            list.Add(TypedParameter.Boolean("success", info.Success));
            if (info.ErrorMessage is { } error)
            {
                list.Add(TypedParameter.String("errmsg", error));
            }
            else if (info.Mode == BackupMode.Pull && info.Phase == BackupJobPhase.Completed)
            {
                // A pull backup only ends by abort, and libvirt words its end so even when it
                // succeeded (libvirt 9.0 + QEMU 7.2: success true, errmsg "Operation canceled").
                list.Add(TypedParameter.String("errmsg", "Operation canceled"));
            }
        }

        return list;
    }

    private async Task AnnounceWhenEndedAsync(DomainBackup backup)
    {
        var info = await backup.Completion.ConfigureAwait(false);
        if (backup.Job.HandedOver)
        {
            // Not ended: the next daemon goes on with it, and announces its end.
            return;
        }

        var domain = backup.Domain;
        _logger.LogInformation("domain {Domain}: backup job {Phase}", domain.Name, info.Phase);
        var remote = new RemoteDomain(domain.Name, domain.Uuid, domain.Id);

        // Each disk's block job ended too (BLOCK_JOB and BLOCK_JOB_2, type BACKUP), as QEMU
        // reports them to libvirt: the disk whose end ends the job is announced after the job
        // (libvirt terminates the job while handling that disk's event, then emits the disk's),
        // the others before it. A domain that stopped took its block jobs with it: libvirt has
        // none to report then.
        var ended = new List<(string Path, string Dev, BlockJobStatus Status)>();
        if (!backup.Job.EndedByDomainStop)
        {
            foreach (var disk in backup.Job.Definition.Disks)
            {
                BlockJobStatus? status = disk.State switch
                {
                    BackupDiskState.Complete => BlockJobStatus.Completed,
                    BackupDiskState.Failed => BlockJobStatus.Failed,
                    BackupDiskState.Cancelled => BlockJobStatus.Canceled,
                    _ => null,
                };
                if (status is { } state)
                {
                    ended.Add((domain.Definition.Disks.FirstOrDefault(d => d.TargetDev == disk.Name)?.SourcePath ?? disk.Name, disk.Name, state));
                }
            }
        }

        for (var i = 0; i < ended.Count - 1; i++)
        {
            Events?.PublishBlockJob(remote, ended[i].Path, ended[i].Dev, BlockJobType.Backup, ended[i].Status);
        }

        Events?.PublishJobCompleted(remote, Statistics(info, completed: true));
        if (ended.Count > 0)
        {
            Events?.PublishBlockJob(remote, ended[^1].Path, ended[^1].Dev, BlockJobType.Backup, ended[^1].Status);
        }
    }

    // A running push knows its total (BOUNDED); a pull runs until aborted (UNBOUNDED).
    private static DomainJobType RunningType(BackupJobInfo info) => info.Mode == BackupMode.Push ? DomainJobType.Bounded : DomainJobType.Unbounded;

    private static DomainJobType CompletedType(BackupJobInfo info) => info.Phase switch
    {
        BackupJobPhase.Completed => DomainJobType.Completed,
        BackupJobPhase.Cancelled => DomainJobType.Cancelled,
        _ => DomainJobType.Failed,
    };

    private static ulong Milliseconds(BackupJobInfo info) => (ulong)Math.Max(0, (long)info.Elapsed.TotalMilliseconds);
}
