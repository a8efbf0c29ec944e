using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Backups;
using Tidemark.Engine.State;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>A running domain left by one host to the next (libvirtd's restart, which QEMU outlives).</summary>
public sealed partial class Domain
{
    /// <summary>
    /// Closes a running domain for the next host on this state directory: ends the guests'
    /// connections, leaves its backup job to the next host (<see cref="BackupJob.HandOverAsync"/>;
    /// one that cannot be carried ends as at a stop), flushes its images and closes them
    /// (storing its bitmaps), recording its status (<see cref="DomainStatus"/>) on the way. Unlike a stop,
    /// the domain is not shut off: a transient one keeps its checkpoint metadata, and the next
    /// host starts it again as it was. A guest that reconnects (QEMU's NBD client with
    /// <c>reconnect-delay</c>) finds its disks where they were, its unanswered requests sent again.
    /// </summary>
    /// <remarks>
    /// The record is written twice: before the guests are disconnected (a kill from then on is a
    /// crash: the next host must not hand the disks back to a guest that may have been told of
    /// writes the images lack), and again once every image is flushed. A kill while the images
    /// close leaves their bitmaps IN_USE: the domain comes back, its data whole, its bitmaps
    /// reported broken. A flush that fails ends the domain as a stop would, without a record.
    /// </remarks>
    /// <returns>False when the domain was not running.</returns>
    /// <exception cref="IOException">The first record could not be written: the domain still runs.</exception>
    internal async Task<bool> HandOverAsync()
    {
        using var held = await LockAsync(CancellationToken.None).ConfigureAwait(false);
        if (Running is not { } running)
        {
            return false;
        }

        var file = Store.StatusFile(Name);
        var status = new DomainStatus(Definition, Id, running.Gate.IsPaused, running.TcpEndPoint?.Port, HandedOver: false) { WasResumed = WasResumed, PausedByIoError = PausedByIoError, NodeIndex = LastStoreIndex, DiskNodes = Nodes.Disks };
        await status.WriteAsync(file, CancellationToken.None).ConfigureAwait(false);

        var backup = Backup;
        Running = null;
        await running.DisconnectGuestsAsync().ConfigureAwait(false);

        // libvirtd keeps a backup job across its restart, since QEMU runs it: here the job
        // stops where it is, with no guest left to write, and the next host goes on with it.
        CarriedBackup? carried = null;
        if (backup is not null)
        {
            try
            {
                carried = await backup.HandOverAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The record could not be carried over: the next host cleans the job's files up.
                Logger.LogError("domain {Domain}: the backup job cannot be left to the next host: {Error}", Name, e.Message);
            }
        }

        var failure = await running.FlushDisksAsync().ConfigureAwait(false);
        if (failure is null)
        {
            try
            {
                // The guests are gone, so the counts are final.
                var disks = running.Disks.Select(d => new DiskStatistics(d.Target, d.Statistics.Read(), d.IoStatus)).ToList();
                await (status with { HandedOver = true, Disks = disks, Backup = carried?.ToElement() }).WriteAsync(file, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                failure = e;
            }
        }

        if (failure is not null)
        {
            Logger.LogError("domain {Domain} cannot be left running for the next host, and is stopped: {Error}", Name, failure.Message);
            AtomicFile.Delete(file);
        }

        try
        {
            await running.CloseDisksAsync(failure).ConfigureAwait(false);
        }
        catch (EngineException e)
        {
            // As at a stop: a bitmap that could not be stored stays IN_USE, and reads as broken.
            Logger.LogError("domain {Domain}: {Error}", Name, e.Message);
        }

        if (failure is null)
        {
            Logger.LogInformation("domain {Domain} left running for the next host (id {Id})", Name, status.Id);
        }
        else
        {
            TransientDisks.DeleteOverlays(status.Definition);
        }

        return true;
    }

    /// <summary>
    /// Starts the domain as a previous host left it (<paramref name="status"/>): the same id,
    /// running definition, pause state (and whether it was resumed) and guest TCP port
    /// (another, with a warning, when that one is taken). The domain's own definition takes
    /// over again at its stop, as after <see cref="DomainHost.CreateAsync"/>.
    /// </summary>
    /// <exception cref="EngineException">The domain cannot be started (a disk is gone, locked or unreadable): it stays shut off.</exception>
    internal async Task ReconnectAsync(DomainStatus status, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        // A backup job carried over is armed before any guest write: the guests' gate stays
        // shut until then.
        var flags = (status.Paused || status.Backup is not null ? DomainStartFlags.Paused : DomainStartFlags.None) | (status.TcpPort is null ? DomainStartFlags.None : DomainStartFlags.GuestTcp);
        var own = Definition;
        Definition = status.Definition;
        try
        {
            try
            {
                await StartLockedAsync(flags, cancellationToken, status.Id, status.TcpPort ?? 0).ConfigureAwait(false);
            }
            catch (SocketException e) when (status.TcpPort is { } port)
            {
                Logger.LogWarning("domain {Domain}: guest TCP port {Port} is taken ({Error}); its disks are served on another, which guests must be told", Name, port, e.Message);
                await StartLockedAsync(flags, cancellationToken, status.Id).ConfigureAwait(false);
            }

            WasResumed = status.WasResumed;
            PausedByIoError = status.Paused && status.PausedByIoError;
            Nodes.Continue(status.NodeIndex, status.DiskNodes);
            foreach (var disk in status.Disks)
            {
                if (Running!.DiskByTarget(disk.Target) is { } running)
                {
                    running.Statistics.Continue(disk.Counters);
                    running.IoStatus = disk.IoStatus;
                }
            }

            if (status.Backup is { } backup)
            {
                await ResumeBackupAsync(backup, Running!, cancellationToken).ConfigureAwait(false);
                if (!status.Paused)
                {
                    Running!.Gate.Resume();
                }
            }
        }
        catch
        {
            Definition = own;
            EndedAtReconnect = true;
            TransientDisks.DeleteOverlays(status.Definition);
            throw;
        }

        if (!ReferenceEquals(own, status.Definition) && DomainFormatter.Format(own, DomainFormatFlags.Secure) != DomainFormatter.Format(status.Definition, DomainFormatFlags.Secure))
        {
            _nextDefinition = own;
        }
    }
}
