using Microsoft.Extensions.Logging;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Disks;
using Tidemark.Engine.State;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// One defined domain: its definition, its state (running, paused or shut off), its checkpoints and,
/// while it runs, its open disks and NBD server (<see cref="RunningDomain"/>).
/// </summary>
/// <remarks>
/// Every operation that changes the domain or its checkpoints holds the domain's lock for its
/// whole length (libvirt's MODIFY job), so operations on one domain never interleave; guest
/// I/O takes no part in it. The lock is taken after the host's list lock is released, never
/// the other way round.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (only WaitAsync is used), so there is nothing to dispose.")]
public sealed partial class Domain
{
    private readonly DomainHost _host;
    private readonly SemaphoreSlim _lock = new(1, 1);

    // A definition given while running; it replaces Definition at the next stop (libvirt's newDef).
    private DomainDefinition? _nextDefinition;

    internal Domain(DomainHost host, DomainDefinition definition, Guid uuid, bool persistent, CheckpointTree checkpoints)
    {
        _host = host;
        Definition = definition;
        Uuid = uuid;
        IsPersistent = persistent;
        Checkpoints = new DomainCheckpoints(this, checkpoints);
    }

    /// <summary>The domain name.</summary>
    public string Name => Definition.Name;

    /// <summary>The domain UUID.</summary>
    public Guid Uuid { get; }

    /// <summary>The definition in effect (while running: the one it was started with).</summary>
    public DomainDefinition Definition { get; private set; }

    /// <summary>Running, paused or shut off.</summary>
    public DomainState State => Running switch
    {
        null => DomainState.ShutOff,
        { Gate.IsPaused: true } => DomainState.Paused,
        _ => DomainState.Running,
    };

    /// <summary>True while running, paused or not (libvirt's virDomainObjIsActive).</summary>
    public bool IsActive => Running is not null;

    /// <summary>The id of a running domain (1, 2, … in start order); -1 when shut off, as libvirt reports it.</summary>
    public int Id { get; private set; } = -1;

    /// <summary>False once a running domain was undefined: it disappears, with its checkpoint metadata, when it stops.</summary>
    public bool IsPersistent { get; private set; }

    /// <summary>The open disks and the NBD server while running; null when shut off.</summary>
    public RunningDomain? Running { get; private set; }

    /// <summary>
    /// Shut off because the process hosting it died while it ran (its guest socket outlived it):
    /// until its next start, libvirt's "shut off (crashed)", as libvirtd reports a domain whose
    /// QEMU died while libvirtd was not running (qemuProcessReconnect).
    /// </summary>
    public bool EndedByHostCrash { get; internal set; }

    /// <summary>
    /// Shut off because a host that had been left the running domain (<see cref="DomainHost.CloseKeepingDomainsAsync"/>)
    /// could not start it again, as it was: until its next start, libvirt's "shut off (daemon)",
    /// which libvirtd reports for a domain it killed because it could not reconnect to it.
    /// </summary>
    public bool EndedAtReconnect { get; internal set; }

    /// <summary>
    /// Resumed (<see cref="ResumeAsync"/>) since its start: libvirt's RUNNING_UNPAUSED reason
    /// rather than RUNNING_BOOTED. Kept across a hand-over to the next host, as libvirt keeps
    /// the reason in its status file.
    /// </summary>
    public bool WasResumed { get; private set; }

    /// <summary>The domain's checkpoints.</summary>
    public DomainCheckpoints Checkpoints { get; }

    internal StateDirectory Store => _host.State;

    internal TimeProvider Clock => _host.Clock;

    internal ILogger Logger => _host.Logger;

    /// <summary>The domain's XML (the inactive definition: the next one if a new definition waits for the next start).</summary>
    public string GetXml(DomainFormatFlags flags) => DomainFormatter.Format(_nextDefinition ?? Definition, flags);

    /// <summary>
    /// Starts the domain: opens every disk with media read-write (read-only disks read-only),
    /// holding QEMU's locks, and serves each as an NBD export named after its target dev on
    /// the domain's unix socket (<see cref="RunningDomain.SocketPath"/>).
    /// </summary>
    /// <exception cref="EngineException">Already running; a disk that cannot be served, is locked by another process or cannot be opened (then nothing stays open).</exception>
    public Task StartAsync(CancellationToken cancellationToken = default) => StartAsync(DomainStartFlags.None, cancellationToken);

    /// <summary>
    /// Starts the domain as <see cref="StartAsync(CancellationToken)"/> does; with
    /// <see cref="DomainStartFlags.GuestTcp"/> the disks are also served on 127.0.0.1
    /// (<see cref="RunningDomain.TcpEndPoint"/>) until the domain stops; with
    /// <see cref="DomainStartFlags.Paused"/> it starts <see cref="DomainState.Paused"/>, every
    /// guest request waiting for <see cref="ResumeAsync"/>.
    /// </summary>
    /// <exception cref="EngineException">Unknown flags; already running; a disk that cannot be served, is locked by another process or cannot be opened (then nothing stays open).</exception>
    public async Task StartAsync(DomainStartFlags flags, CancellationToken cancellationToken = default)
    {
        Flags.Check(flags, DomainStartFlags.GuestTcp | DomainStartFlags.Paused, "virDomainCreateWithFlags");
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        if (Running is not null)
        {
            throw new EngineException(EngineErrorReason.DomainAlreadyRunning, "domain is already running");
        }

        await StartLockedAsync(flags, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Starts the domain with <paramref name="live"/> as its running definition
    /// (virDomainCreateXML of a defined, inactive domain of the same name and UUID): the
    /// domain's own definition takes over again when it stops, as libvirt keeps the persistent
    /// one aside (its newDef) while the live one runs.
    /// </summary>
    /// <exception cref="EngineException">"domain '%s' is already active"; the start failed (then the domain keeps its own definition).</exception>
    internal async Task StartAsync(DomainDefinition live, DomainStartFlags flags, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        if (Running is not null)
        {
            throw new EngineException(EngineErrorReason.DomainAlreadyRunning, $"domain '{Name}' is already active");
        }

        var own = Definition;
        Definition = live;
        try
        {
            await StartLockedAsync(flags, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Definition = own;
            throw;
        }

        _nextDefinition = own;
    }

    // Under the domain's lock, with the domain shut off.
    // A reconnect (Domain.Reconnect.cs) gives the id and TCP port the domain had.
    internal async Task StartLockedAsync(DomainStartFlags flags, CancellationToken cancellationToken, int? id = null, int tcpPort = 0)
    {
        // A reconnect's running definition is as the start made it: sources its startup policy
        // dropped, the overlays its transient disks have already.
        var own = Definition;
        var live = id is null ? await TransientDisks.AddOverlaysAsync(StartupPolicies.Apply(own), cancellationToken).ConfigureAwait(false) : own;
        try
        {
            Running = await RunningDomain.StartAsync(live, Store.SocketPath(Name), flags, tcpPort, _host.LoggerFactory, this, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            if (live != own)
            {
                TransientDisks.DeleteOverlays(live);
            }

            throw;
        }

        if (live != own)
        {
            // The domain's own definition takes over again at the stop, as after CreateAsync.
            _nextDefinition ??= own;
            Definition = live;
        }

        EndedByHostCrash = false;
        EndedAtReconnect = false;
        WasResumed = false;
        PausedByIoError = false;
        Id = id ?? _host.NextId();
        var overlaid = id is null ? TransientDisks.Targets(live) : [];

        // Numbered as the definition has them: a disk its startup policy dropped takes one
        // number as an empty drive does, each overlay one more after the rest.
        Nodes.Start(own.Disks.Select(d => (d.TargetDev, Running.DiskByTarget(d.TargetDev) is { } disk ? BitmapChain.Layers(disk.LiveImage).Count - (overlaid.Contains(d.TargetDev) ? 1 : 0) : 0)));
        foreach (var target in overlaid)
        {
            Nodes.Overlay(target);
        }

        Logger.LogInformation("domain {Domain} started{Paused}; disks served on {Socket} {Tcp}", Name, Running.Gate.IsPaused ? " paused" : "", Running.SocketPath, Running.TcpEndPoint?.ToString() ?? "");
    }

    /// <summary>
    /// Stops the domain (libvirt's destroy), paused or not: ends the guests' NBD connections
    /// (requests waiting at a paused domain's gate end with them, unanswered), flushes every
    /// image and closes it, storing its bitmaps.
    /// A transient domain then disappears, with its checkpoint metadata.
    /// </summary>
    /// <remarks>An image that fails to flush or close is logged, not thrown: the domain is shut off all the same, and a bitmap left unstored reads as broken.</remarks>
    /// <exception cref="EngineException">"domain is not running".</exception>
    public async Task DestroyAsync(CancellationToken cancellationToken = default)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        await DestroyLockedAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Stops the domain as <see cref="DestroyAsync"/> does; a guest has no shutdown of its own to
    /// wait for. A paused domain is refused, as qemuDomainShutdownFlagsMonitor refuses any state
    /// but running (a paused guest could not act on the power button).
    /// </summary>
    /// <exception cref="EngineException">"domain is not running" (shut off or paused).</exception>
    public async Task ShutdownAsync(CancellationToken cancellationToken = default)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        if (State != DomainState.Running)
        {
            throw NotRunning();
        }

        await DestroyLockedAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Pauses the domain (virDomainSuspend, qemuDomainSuspend): new guest requests wait at the
    /// disks' <see cref="GuestGate"/>, and this returns once the requests already in flight have
    /// completed; the domain is then <see cref="DomainState.Paused"/>. A paused domain stays as it
    /// is. Checkpoints and backup jobs go on while paused.
    /// </summary>
    /// <returns>True when this call paused the domain; false when it was paused already (libvirt then skips qemuProcessStopCPUs, and no event follows).</returns>
    /// <exception cref="EngineException">"domain is not running" (shut off).</exception>
    /// <exception cref="OperationCanceledException">Cancelled while draining; the domain is running again.</exception>
    public async Task<bool> SuspendAsync(CancellationToken cancellationToken = default)
    {
        // libvirt's SUSPEND job: serialised with every other job on the domain.
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var running = Running ?? throw NotRunning();
        if (running.Gate.IsShut)
        {
            return false;
        }

        await running.Gate.PauseAsync(cancellationToken).ConfigureAwait(false);
        Logger.LogInformation("domain {Domain} paused", Name);
        return true;
    }

    /// <summary>
    /// Resumes a paused domain (virDomainResume, qemuDomainResume): the guest requests waiting
    /// at the gate go on.
    /// </summary>
    /// <exception cref="EngineException">"domain is not running" (shut off); "domain is already running" (not paused), as qemuDomainResume refuses it.</exception>
    public async Task ResumeAsync(CancellationToken cancellationToken = default)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var running = Running ?? throw NotRunning();
        if (!running.Gate.IsShut)
        {
            throw new EngineException(EngineErrorReason.DomainAlreadyRunning, "domain is already running");
        }

        running.Gate.Resume();
        WasResumed = true;
        PausedByIoError = false;
        Logger.LogInformation("domain {Domain} resumed", Name);
    }

    // Under the domain's lock.
    private async Task DestroyLockedAsync()
    {
        var running = Running ?? throw NotRunning();
        await EndBackupForStopAsync().ConfigureAwait(false);
        Running = null;
        Id = -1;
        var live = Definition;
        if (_nextDefinition is not null)
        {
            Definition = _nextDefinition;
            _nextDefinition = null;
        }

        try
        {
            await running.StopAsync().ConfigureAwait(false);
        }
        catch (EngineException e)
        {
            // The domain has stopped all the same, as libvirt's destroy succeeds however QEMU
            // ends: a bitmap that could not be stored stays IN_USE in its image, so an
            // incremental backup from its checkpoint is refused rather than wrong.
            Logger.LogError("domain {Domain}: {Error}", Name, e.Message);
        }
        finally
        {
            // Closed or not, the images are the guest's no more: a transient disk's writes go.
            TransientDisks.DeleteOverlays(live);
            if (!IsPersistent)
            {
                Store.DeleteCheckpointDirectory(Name);
                _host.Forget(this);
            }

            Logger.LogInformation("domain {Domain} stopped", Name);
        }
    }

    /// <summary>
    /// The record of the files a job of this domain creates (<see cref="JobRecord"/>): the job
    /// adds each file before creating it and completes the record when it has ended.
    /// </summary>
    public JobRecord CreateJobRecord() => new(Store.JobRecordFile(Name));

    /// <summary>Takes the domain's lock (libvirt's MODIFY job); dispose the result to release it.</summary>
    internal async Task<Held> LockAsync(CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Held(_lock);
    }

    internal async Task RedefineAsync(DomainDefinition definition, CancellationToken cancellationToken)
    {
        // Below the edit warning libvirt writes (virDomainDefSaveXML), so the file reads the
        // same as the one libvirt keeps in /etc/libvirt/qemu.
        await AtomicFile.WriteLibvirtFileAsync(Store.DomainFile(definition.Name), EditWarning.Domain(definition.Name, Uuid) + DomainFormatter.Format(definition, DomainFormatFlags.Secure), cancellationToken).ConfigureAwait(false);
        IsPersistent = true;
        if (Running is null)
        {
            Definition = definition;
        }
        else
        {
            _nextDefinition = definition;
        }
    }

    /// <summary>Undefine under the domain's lock (spec §4.5).</summary>
    internal async Task UndefineAsync(DomainUndefineFlags flags, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        if (!IsPersistent)
        {
            throw new EngineException(EngineErrorReason.TransientDomain, "cannot undefine transient domain");
        }

        if (Running is null && Checkpoints.Tree.Count > 0)
        {
            if (!flags.HasFlag(DomainUndefineFlags.CheckpointsMetadata))
            {
                throw new EngineException(EngineErrorReason.InactiveDomainHasCheckpoints, $"cannot delete inactive domain with {Checkpoints.Tree.Count} checkpoints");
            }

            Store.DeleteCheckpointDirectory(Name);
        }

        AtomicFile.Delete(Store.DomainFile(Name));
        IsPersistent = false;
        _nextDefinition = null;
        if (Running is null)
        {
            _host.Forget(this);
        }
    }

    internal static EngineException NotRunning() => new(EngineErrorReason.DomainNotRunning, "domain is not running");

    /// <summary>The domain's lock, held until disposed.</summary>
    internal readonly struct Held(SemaphoreSlim semaphore) : IDisposable
    {
        public void Dispose() => semaphore.Release();
    }
}
