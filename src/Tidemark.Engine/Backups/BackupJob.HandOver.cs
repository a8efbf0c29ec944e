using Microsoft.Extensions.Logging;
using Tidemark.Formats.Backups;
using Tidemark.Nbd.Server;
using Tidemark.Storage;

namespace Tidemark.Engine.Backups;

/// <summary>
/// A running job left by one host to the next, as libvirtd's restart leaves QEMU's backup job
/// running: the job stops where it is, its stores flushed and closed but kept, and the next host
/// goes on with it from there (<see cref="ResumeAsync"/>).
/// </summary>
/// <remarks>
/// <para>What makes the carried job exact: every cluster outside a disk's pending set has its
/// point-in-time content in the store (a push target or a pull scratch), flushed; every
/// cluster in it still has that content in the live image, since any guest write to it would
/// have copied it aside first. The guests are gone before the job stops and come back only
/// after the next host has armed copy-before-write again, so nothing changes the live images
/// in between.</para>
/// <para>What a client notices: a pull's NBD clients lose their connections, as the guests do,
/// and find the same export on the same address once the next host serves it; a push goes on
/// copying. The job's elapsed time goes on from where it was.</para>
/// </remarks>
public sealed partial class BackupJob
{
    /// <summary>
    /// Stops the job for the next host and returns what that host needs to go on with it; call
    /// it once the guests are disconnected. Null when the job cannot be carried over: it has
    /// ended or is ending, a disk has failed, or its pull server listens on a socket the caller
    /// passed in (<c>transport='fd'</c>), which the next host cannot have. The job then ends as
    /// at a domain's stop. Either way <see cref="Completion"/> completes.
    /// </summary>
    internal async Task<CarriedBackup?> HandOverAsync()
    {
        lock (_lock)
        {
            if (_termination is not null || _phase != BackupJobPhase.Running || _definition.Server is { Transport: ServerTransport.Fd })
            {
                _domainStopped = true;
                BeginTermination(cancel: true);
                return null;
            }

            // No abort, failure or end of the copy starts a termination from here on.
            _handedOver = true;
            _termination = Task.CompletedTask;
        }

        try
        {
            var carried = await StopForHandOverAsync().ConfigureAwait(false);
            _completion.TrySetResult(Info);
            return carried;
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "the backup job cannot be left to the next host, and ends");
            lock (_lock)
            {
                _handedOver = false;
                _domainStopped = true;
                _firstError ??= e;
                Move(BackupJobPhase.Cancelling);
                _termination = Task.Run(TerminateAsync);
            }

            return null;
        }
    }

    private async Task<CarriedBackup> StopForHandOverAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_push is not null)
        {
            // Cancelled copies give their clusters back to the pending sets.
            await _push.ConfigureAwait(false);
        }

        await StopServerAsync().ConfigureAwait(false);
        var progress = new List<CopyProgress>();
        foreach (var disk in _disks)
        {
            progress.Add(await disk.CopyBeforeWrite.HandOverAsync().ConfigureAwait(false)
                ?? throw new BackupJobException(BackupErrorReason.JobEnded, $"backup of disk '{disk.Disk.Name}' failed before the hand-over: {disk.CopyBeforeWrite.Failure?.Message}"));
        }

        lock (_lock)
        {
            if (_firstError is { } error)
            {
                throw new BackupJobException(BackupErrorReason.JobEnded, $"the backup job failed before the hand-over: {error.Message}", error);
            }
        }

        // What the record says is in a store must be there for the next host, whatever happens
        // to this one from here.
        foreach (var disk in _disks)
        {
            await disk.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }

        foreach (var disk in _disks)
        {
            try
            {
                await disk.Store.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or StorageException)
            {
                // Flushed already: what the next host reads is there.
                _logger.LogWarning(e, "closing the backup store of disk '{Disk}' failed", disk.Disk.Name);
            }
        }

        TimeSpan elapsed;
        lock (_lock)
        {
            elapsed = _options.TimeProvider.GetElapsedTime(_started);
        }

        return new CarriedBackup(
            Definition,
            elapsed,
            _options.OnCopyBeforeWriteError,
            _options.ReuseExternal,
            [.. _disks.Select((d, i) => new CarriedDisk(d.Disk.Name, d.CreatedPath, d.StoreZeroes, progress[i], d.Allocated, d.ZeroData, d.Source.Incremental))]);
    }

    /// <summary>
    /// Takes up a job a previous host handed over (<see cref="HandOverAsync"/>): reopens its
    /// stores, arms copy-before-write where the copying had got to and, for a pull, serves its
    /// exports on the same address again. Then, as after <see cref="PrepareAsync"/>: install
    /// the interceptors before any guest write, and <see cref="Start"/>.
    /// </summary>
    /// <param name="carried">The job as the previous host left it.</param>
    /// <param name="disks">Each backed-up disk's live image, open again; <see cref="BackupDiskSource.Incremental"/> is taken from <paramref name="carried"/>.</param>
    /// <exception cref="BackupJobException">A store cannot be opened, a disk is missing or changed size, the server cannot start. Nothing is removed: the caller cleans up the job's files.</exception>
    internal static async Task<BackupJob> ResumeAsync(CarriedBackup carried, IReadOnlyList<BackupDiskSource> disks, BackupJobOptions options, CancellationToken cancellationToken)
    {
        var mode = carried.Definition.Mode;
        var stores = new List<IBlockImage>();
        var jobs = new List<DiskBackup>();
        NbdServer? server = null;
        BackupJob? job = null;
        try
        {
            foreach (var carriedDisk in carried.Disks)
            {
                var disk = carried.Definition.Disks.FirstOrDefault(d => d.Name == carriedDisk.Target && d.Backup)
                    ?? throw new BackupJobException(BackupErrorReason.NoSuchDisk, $"the carried backup document has no disk named '{carriedDisk.Target}'");
                var live = disks.FirstOrDefault(s => s.Target == carriedDisk.Target)
                    ?? throw new BackupJobException(BackupErrorReason.NoSuchDisk, $"no disk named '{carriedDisk.Target}'");
                if (live.Live.VirtualSize != carriedDisk.Progress.Pending.Size)
                {
                    throw new BackupJobException(BackupErrorReason.JobEnded, $"disk '{carriedDisk.Target}' is {live.Live.VirtualSize} bytes, but its backup job began at {carriedDisk.Progress.Pending.Size}");
                }

                var source = live with { Incremental = carriedDisk.Incremental };
                var store = await BackupStoreFile.ReopenAsync(mode, disk, carriedDisk.Zeroes, options, cancellationToken).ConfigureAwait(false);
                stores.Add(store.Image);
                var clusters = new ArmedClusters(carriedDisk.Progress.Pending, carriedDisk.Allocated, carriedDisk.ZeroData, carriedDisk.Progress);
                jobs.Add(Arm(mode, disk, source, store, carriedDisk.CreatedPath, options, e => job?.OnCopyBeforeWriteFailed(e), clusters));
            }

            if (mode == BackupMode.Pull)
            {
                server = await PullServer.StartAsync(carried.Definition.Server!, jobs.Select(j => j.Export!), options, cancellationToken).ConfigureAwait(false);
            }

            // The clock goes on from the elapsed time the previous host had counted.
            var elapsedTicks = (long)(carried.Elapsed.TotalSeconds * options.TimeProvider.TimestampFrequency);
            job = new BackupJob(carried.Definition, jobs, server, options, options.TimeProvider.GetTimestamp() - elapsedTicks);
            return job;
        }
        catch
        {
            await ReleaseAsync(server, stores, jobs).ConfigureAwait(false);
            throw;
        }
    }
}
