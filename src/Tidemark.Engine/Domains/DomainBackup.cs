using Microsoft.Extensions.Logging;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Disks;
using Tidemark.Engine.State;
using Tidemark.Formats.Backups;

namespace Tidemark.Engine.Domains;

/// <summary>
/// The backup job of a running domain (at most one, spec §6.7 step 4), from the instant it
/// began until its interceptors are removed and its record is dropped. <see cref="Completion"/>
/// completes after that, with the completed statistics: what <c>JOB_COMPLETED</c> carries.
/// </summary>
public sealed class DomainBackup
{
    private readonly RunningDomain _running;
    private readonly JobRecord _record;
    private readonly IReadOnlyList<string> _targets;
    private readonly Task<BackupJobInfo> _completion;

    internal DomainBackup(Domain domain, BackupJob job, RunningDomain running, JobRecord record, IReadOnlyList<string> targets)
    {
        Domain = domain;
        Job = job;
        _running = running;
        _record = record;
        _targets = targets;
        _completion = FinishAsync();
    }

    /// <summary>The domain backed up.</summary>
    public Domain Domain { get; }

    /// <summary>The job.</summary>
    public BackupJob Job { get; }

    /// <summary>The disks (target devs) the job backs up.</summary>
    public IReadOnlyList<string> Targets => _targets;

    /// <summary>
    /// <c>virDomainBackupGetXMLDesc</c>: the public document with the defaults filled in
    /// (spec §3.4, §3.5).
    /// </summary>
    public string GetXml() => BackupFormatter.Format(Job.Definition with
    {
        Disks = [.. Job.Definition.Disks.Select(d => d with { State = BackupDiskState.None })],
    });

    /// <summary>Completes once the job has ended and the domain has let go of it; never faults.</summary>
    public Task<BackupJobInfo> Completion => _completion;

    /// <summary>
    /// Leaves the job to the next host (<see cref="BackupJob.HandOverAsync"/>), its record
    /// carried over with it; call it once the guests are disconnected. Null when the job ended
    /// instead, as at a stop. Returns once the domain has let go of the job.
    /// </summary>
    internal async Task<CarriedBackup?> HandOverAsync()
    {
        var carried = await Job.HandOverAsync().ConfigureAwait(false);
        await Completion.ConfigureAwait(false);
        if (carried is not null)
        {
            await _record.CarryOverAsync().ConfigureAwait(false);
        }

        return carried;
    }

    private async Task<BackupJobInfo> FinishAsync()
    {
        var info = await Job.Completion.ConfigureAwait(false);
        try
        {
            // Ended jobs pass writes through untouched; the interceptors still come off in an
            // instant so that a later job installs its own on a clean disk.
            using (var closure = await _running.Barrier.CloseAsync(CancellationToken.None).ConfigureAwait(false))
            {
                foreach (var target in _targets)
                {
                    _running.DiskByTarget(target)?.Guest.SetInterceptor(null, closure);
                }
            }

            await Job.DisposeAsync().ConfigureAwait(false);

            // The job kept or removed its files itself: nothing is left for a restart to clean.
            // A job handed over keeps them, and the next host takes its record back.
            if (!Job.HandedOver)
            {
                await _record.CompleteAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Domain.Logger.LogError(e, "domain {Domain}: cleaning up after the backup job failed", Domain.Name);
        }
        finally
        {
            Domain.OnBackupEnded(this, info);
        }

        return info;
    }
}
