using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Disks;

namespace Tidemark.Engine.Domains;

// Guest requests whose image I/O failed: the disk's error policy, as QEMU's block layer applies
// werror and rerror (blk_get_error_action, blk_error_action) and libvirt reports the outcome
// (qemuProcessHandleIOError).
public sealed partial class Domain : IGuestIoFailures
{
    /// <summary>
    /// Paused because a guest request's I/O failed under a stop action (libvirt's
    /// PAUSED_IOERROR), not by a suspend: until the resume.
    /// </summary>
    public bool PausedByIoError { get; private set; }

    /// <remarks>
    /// Every failure is announced (<see cref="DomainHost.GuestIoError"/>), whatever its action, as
    /// QEMU sends BLOCK_IO_ERROR for each. A stop action records the disk's io-status and pauses
    /// a running domain, draining the other requests in flight, as QEMU's vm_stop does; a domain
    /// paused already (by a suspend, or by another request's failure) stays as it is. The request
    /// then waits at the gate for the resume and is tried again, so the guest never sees the
    /// failure: freeing space on the host and resuming the domain is all it takes.
    /// </remarks>
    async ValueTask<bool> IGuestIoFailures.OnGuestIoFailureAsync(RunningDisk disk, bool write, Exception failure, CancellationToken cancellationToken)
    {
        var noSpace = DiskErrorPolicy.IsNoSpace(failure);
        var action = disk.ErrorPolicy.ActionFor(write, noSpace);
        Logger.LogWarning("domain {Domain}: disk {Disk}: {Operation} failed ({Action}): {Error}", Name, disk.Target, write ? "write" : "read", action, failure.Message);
        if (action != DiskErrorAction.Stop)
        {
            _host.Announce(new GuestIoErrorEventArgs(this, disk.Target, SourceOf(disk), action, noSpace, pausedDomain: false));
            if (action == DiskErrorAction.Report)
            {
                ExceptionDispatchInfo.Throw(failure);
            }

            return false;
        }

        disk.IoStatus = noSpace ? DiskIoStatus.NoSpace : DiskIoStatus.Failed;

        // libvirt's MODIFY job is not taken for this (QEMU stops the VM by itself), but the lock
        // keeps the pause apart from a suspend, resume or stop of the same domain. A stop
        // cancels this request's token, which ends the wait.
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var paused = false;
        try
        {
            if (Running is { } running && running.DiskByTarget(disk.Target) == disk && !running.Gate.IsShut)
            {
                PausedByIoError = true;
                await running.Gate.PauseAsync(cancellationToken).ConfigureAwait(false);
                paused = true;
                Logger.LogWarning("domain {Domain} paused: disk {Disk} {Error}", Name, disk.Target, noSpace ? "is out of space" : "failed");
            }
        }
        catch (OperationCanceledException)
        {
            // The pause gave way (the gate is open again): the domain runs on.
            PausedByIoError = false;
            throw;
        }
        finally
        {
            // Announced once the domain reads as paused, so a client the event wakes sees it so.
            _host.Announce(new GuestIoErrorEventArgs(this, disk.Target, SourceOf(disk), action, noSpace, paused));
        }

        return true;
    }

    // The disk's source as the running definition names it (a transient disk's overlay).
    private string SourceOf(RunningDisk disk) => Definition.DiskByTarget(disk.Target)?.SourcePath ?? disk.Definition.SourcePath ?? "";
}

/// <summary>
/// A guest request's I/O failed on a running domain's disk (QEMU's BLOCK_IO_ERROR, libvirt's
/// IO_ERROR and IO_ERROR_REASON events), and what its error policy made of it.
/// </summary>
public sealed class GuestIoErrorEventArgs : EventArgs
{
    internal GuestIoErrorEventArgs(Domain domain, string target, string source, DiskErrorAction action, bool noSpace, bool pausedDomain)
    {
        Domain = domain;
        Target = target;
        Source = source;
        Action = action;
        NoSpace = noSpace;
        PausedDomain = pausedDomain;
    }

    /// <summary>The domain.</summary>
    public Domain Domain { get; }

    /// <summary>The disk's target dev.</summary>
    public string Target { get; }

    /// <summary>The disk's source path (empty for a source without one).</summary>
    public string Source { get; }

    /// <summary>What the failed request came to.</summary>
    public DiskErrorAction Action { get; }

    /// <summary>The host ran out of space (libvirt's reason "enospc"; otherwise its reason is empty).</summary>
    public bool NoSpace { get; }

    /// <summary>This failure paused the running domain (libvirt's SUSPENDED_IOERROR lifecycle event follows).</summary>
    public bool PausedDomain { get; }
}
