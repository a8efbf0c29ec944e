using Microsoft.Extensions.Logging;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Disks;
using Tidemark.Engine.State;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Storage;

namespace Tidemark.Engine.Domains;

/// <summary><c>virDomainBackupBegin</c> flags.</summary>
[Flags]
public enum BackupBeginFlags : uint
{
    None = 0,

    /// <summary>VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL: stores exist and are used as they are (spec §6.7 step 11).</summary>
    ReuseExternal = 1,
}

/// <summary>
/// A running domain's backup job (spec §4.4, §6.7, §6.11): begin, the job's statistics while it
/// runs and once it has ended (handed out once), abort, and the end of the job when the domain
/// stops.
/// </summary>
/// <remarks>
/// <see cref="_backupLock"/> guards <see cref="_backup"/> and <see cref="_completedBackup"/>; it
/// is never held across an await. Begin holds the domain's lock as well (libvirt's async job
/// and its MODIFY phase), so a begin never meets a stop or a checkpoint half-way.
/// </remarks>
public sealed partial class Domain
{
    private const string BackupBeginFunction = "qemuDomainBackupBegin";

    private readonly Lock _backupLock = new();
    private DomainBackup? _backup;
    private BackupJobInfo? _completedBackup;

    /// <summary>libvirt's node counter and the indexes it gave the running disks' layers; a backup's stores are numbered after them.</summary>
    internal NodeNumbering Nodes { get; } = new();

    /// <summary>The indexes libvirt's node counter gave each running disk's layers, the top's first (the live XML's <c>index</c> attributes); an ejected drive's one number.</summary>
    public IReadOnlyDictionary<string, System.Collections.Immutable.ImmutableArray<uint>> DiskNodeIndexes => Nodes.Disks;

    /// <summary>The node counter (libvirt's <c>nodenameindex</c>): the index the last store or image layer took.</summary>
    internal uint LastStoreIndex => Nodes.Last;

    /// <summary>
    /// Wraps each store the next jobs open (<see cref="BackupJobOptions.StoreWrapper"/>): a seam
    /// for tests that hold or fail a running job's writes; production leaves it null.
    /// </summary>
    internal Func<IBlockImage, IBlockImage>? BackupStoreWrapper { get; set; }

    /// <summary>The running backup job, or null.</summary>
    public DomainBackup? Backup
    {
        get
        {
            lock (_backupLock)
            {
                return _backup;
            }
        }
    }

    /// <summary>
    /// <c>virDomainBackupBegin</c>: begins a backup of the running domain at one instant, with
    /// the checkpoint described by <paramref name="checkpointXml"/> (if any) created in the same
    /// instant. Returns once the job runs; its <see cref="DomainBackup.Completion"/> tells when
    /// it has ended.
    /// </summary>
    /// <remarks>
    /// The order (design.md, "The instant"; spec §6.7): the job's files are recorded in the
    /// state directory before each is created; the barrier closes; the checkpoint's bitmaps are
    /// added and the incremental dirty sets snapshot (merged across each chain); the stores are
    /// created and each disk's copy-before-write is installed; the barrier opens; the job starts.
    /// </remarks>
    /// <exception cref="EngineException">Bad flags; an inactive domain; a backup already running that did not end within <see cref="DomainHost.JobWaitTime"/>; a missing base checkpoint or a broken bitmap chain; checkpoint errors.</exception>
    /// <exception cref="Formats.DocumentException">A document that cannot be read, breaks its schema or does not fit the domain.</exception>
    /// <exception cref="BackupJobException">A store that exists or cannot be created, no disk selected, a pull server that cannot start.</exception>
    public async Task<DomainBackup> BeginBackupAsync(string backupXml, string? checkpointXml, BackupBeginFlags flags = BackupBeginFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backupXml);
        Flags.Check(flags, BackupBeginFlags.ReuseExternal, BackupBeginFunction);
        var parsed = BackupParser.Parse(backupXml);
        var now = Clock.GetUtcNow().ToUnixTimeSeconds();
        var checkpoint = checkpointXml is null ? null : CheckpointParser.Parse(checkpointXml, CheckpointParseMode.Create, now);
        var suffix = checkpoint?.Name ?? now.ToString(System.Globalization.CultureInfo.InvariantCulture);

        using var held = await LockWithoutBackupAsync(cancellationToken).ConfigureAwait(false);
        var running = Running
            ?? throw new EngineException(EngineErrorReason.BackupOfInactiveDomain, "cannot perform disk backup for inactive domain");
        var aligned = BackupAligner.Align(parsed, Definition, suffix);

        // libvirt checks for a backup once more behind its job lock ("another backup job is
        // already running", qemuBackupBegin); here the lock is only ever held with no backup.
        aligned = BackupDefaults.Apply(aligned, Nodes.Next);
        var selected = aligned.Disks.Where(d => d.Backup).ToList();
        foreach (var disk in selected)
        {
            if (running.DiskByTarget(disk.Name) is null)
            {
                throw new BackupJobException(BackupErrorReason.NoSuchDisk, $"no disk named '{disk.Name}'");
            }

            TransientDisks.RefuseBlockJob(Definition, disk.Name);

            if (disk.Mode == BackupDiskMode.Incremental && !Checkpoints.Exists(disk.Incremental!))
            {
                throw new EngineException(EngineErrorReason.NoIncrementalCheckpoint, $"Checkpoint '{disk.Incremental}' for incremental backup of disk '{disk.Name}' not found");
            }
        }

        var alignedCheckpoint = checkpoint is null ? null : Checkpoints.PrepareWithBackup(checkpoint, running);

        // libvirt looks the group up while preparing the job (§6.7 step 12), before the instant.
        // The job's server owns the socket once the job is prepared; until then, a failure closes it.
        var serverSocket = aligned.Server is { Transport: ServerTransport.Fd, FdGroup: { } fdGroup } ? DuplicateServerSocket(fdGroup) : null;
        var record = CreateJobRecord();
        if (aligned.Server is { Transport: ServerTransport.Unix, Socket: { } socket })
        {
            // The pull server's socket is the job's too: a crash leaves it behind for the next
            // start to remove, like the scratch files.
            await record.AddAsync(socket, cancellationToken).ConfigureAwait(false);
        }

        BackupJob? job = null;
        BarrierClosure closure;
        try
        {
            closure = await running.Barrier.CloseAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            serverSocket?.Dispose();
            await record.CompleteAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        try
        {
            // The instant: no guest write is in flight, none passes until the barrier opens.
            var sources = selected.Select(d =>
            {
                var disk = running.DiskByTarget(d.Name)!;
                var incremental = d.Mode == BackupDiskMode.Incremental ? disk.GetIncrementalBitmap(d.Incremental!, closure) : null;
                return new BackupDiskSource(d.Name, disk.LiveImage, incremental, disk.Definition.SourcePath!, disk.Format);
            }).ToList();
            if (alignedCheckpoint is not null)
            {
                await DomainCheckpoints.AddBitmapsWithinInstantAsync(alignedCheckpoint, running, DiskNodeIndexes, closure, cancellationToken).ConfigureAwait(false);
            }

            job = await BackupJob.PrepareAsync(aligned, sources, new BackupJobOptions
            {
                ReuseExternal = flags.HasFlag(BackupBeginFlags.ReuseExternal),
                OnCreatingFile = async (path, ct) => await record.AddAsync(path, ct).ConfigureAwait(false),
                TimeProvider = Clock,
                LoggerFactory = _host.LoggerFactory,
                StoreWrapper = BackupStoreWrapper,
                ServerSocket = serverSocket,
                TlsDirectory = _host.BackupTlsDirectory,
                TlsVerifyPeer = _host.BackupTlsVerifyPeer,
            }, cancellationToken).ConfigureAwait(false);
            foreach (var disk in selected)
            {
                running.DiskByTarget(disk.Name)!.Guest.SetInterceptor(job.InterceptorFor(disk.Name), closure);
            }

            if (alignedCheckpoint is not null)
            {
                await Checkpoints.CommitAsync(alignedCheckpoint, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            foreach (var disk in selected)
            {
                running.DiskByTarget(disk.Name)?.Guest.SetInterceptor(null, closure);
            }

            closure.Dispose();
            if (job is not null)
            {
                await job.DisposeAsync().ConfigureAwait(false);
            }

            serverSocket?.Dispose();

            if (alignedCheckpoint is not null)
            {
                await DomainCheckpoints.RemoveBitmapsAsync(alignedCheckpoint, running).ConfigureAwait(false);
            }

            await record.CompleteAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        closure.Dispose();
        var backup = new DomainBackup(this, job, running, record, [.. selected.Select(d => d.Name)]);
        lock (_backupLock)
        {
            _backup = backup;
            _completedBackup = null;
        }

        job.Start();
        Logger.LogInformation("domain {Domain}: {Mode} backup of {Disks} started", Name, BackupNames.Of(job.Mode), string.Join(", ", backup.Targets));
        return backup;
    }

    /// <summary>
    /// Takes the domain's lock once no backup runs, as libvirt's begin takes the domain's async
    /// job (qemuBackupBegin, virDomainObjBeginAsyncJob): a running backup holds it until it
    /// ends, and a begin waits for that end for <see cref="DomainHost.JobWaitTime"/> at most,
    /// then fails as virDomainObjBeginJobInternal does. A backup that ends within the wait
    /// lets the waiting begin go on and start its own. The wait does not hold the domain's
    /// lock: abort, destroy, suspend and checkpoints go on meanwhile, as the async job's mask
    /// lets them (qemuBackupBegin's qemuDomainObjSetAsyncJobMask).
    /// </summary>
    /// <exception cref="EngineException">"cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)": libvirt names the API that began the async job (its asyncOwnerAPI), which for a backup is always libvirtd's dispatcher of virDomainBackupBegin.</exception>
    private async Task<Held> LockWithoutBackupAsync(CancellationToken cancellationToken)
    {
        using var wait = new CancellationTokenSource(_host.JobWaitTime, Clock);
        using var waitOrCancel = CancellationTokenSource.CreateLinkedTokenSource(wait.Token, cancellationToken);
        while (true)
        {
            if (Backup is { } backup)
            {
                try
                {
                    await backup.Completion.WaitAsync(waitOrCancel.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (wait.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    throw new EngineException(EngineErrorReason.JobWaitTimeout, "cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)");
                }
            }

            var held = await LockAsync(cancellationToken).ConfigureAwait(false);
            if (Backup is null)
            {
                return held;
            }

            // Another begin got there first: wait for its job in turn, within the same time.
            held.Dispose();
        }
    }

    /// <summary>
    /// The completed job's statistics (<c>VIR_DOMAIN_JOB_STATS_COMPLETED</c>), or null. They are
    /// handed out once unless <paramref name="keep"/> (<c>_KEEP_COMPLETED</c>), as libvirt does.
    /// </summary>
    public BackupJobInfo? TakeCompletedBackupInfo(bool keep)
    {
        lock (_backupLock)
        {
            var info = _completedBackup;
            if (!keep)
            {
                _completedBackup = null;
            }

            return info;
        }
    }

    /// <summary>
    /// <c>virDomainAbortJob</c>: starts ending the backup and returns right away; the job ends
    /// asynchronously (spec §4.4).
    /// </summary>
    /// <remarks>
    /// A shut-off domain is refused as such before any job is looked for: qemuDomainAbortJobFlags
    /// checks that the domain is active (virDomainObjCheckActive) before it looks at its async job.
    /// </remarks>
    /// <exception cref="EngineException">"domain is not running"; "no job is active on the domain".</exception>
    public void AbortBackup()
    {
        if (Running is null)
        {
            throw NotRunning();
        }

        var backup = Backup ?? throw new EngineException(EngineErrorReason.NoActiveJob, "no job is active on the domain");
        _ = backup.Job.AbortAsync();
    }

    /// <summary>The running backup's document (<c>virDomainBackupGetXMLDesc</c>).</summary>
    /// <exception cref="EngineException">"no domain backup job present".</exception>
    public string GetBackupXml()
        => (Backup ?? throw new EngineException(EngineErrorReason.NoBackupJob, "no domain backup job present")).GetXml();

    internal void OnBackupEnded(DomainBackup backup, BackupJobInfo info)
    {
        lock (_backupLock)
        {
            if (_backup == backup)
            {
                _backup = null;
            }

            _completedBackup = info;
        }

        if (backup.Job.HandedOver)
        {
            Logger.LogInformation("domain {Domain}: backup job left running for the next host", Name);
        }
        else
        {
            Logger.LogInformation("domain {Domain}: backup ended {Phase}", Name, info.Phase);
        }
    }

    /// <summary>
    /// Takes up the backup job a previous host left running with the domain
    /// (<see cref="HandOverAsync"/>), as libvirtd finds QEMU's job again when it reconnects:
    /// called while the guests' gate is still shut, so copy-before-write is armed before any
    /// guest write. A job that cannot go on (its record unreadable, a store gone) ends here:
    /// its files are removed as a crashed job's are, and the domain runs on without it.
    /// </summary>
    private async Task ResumeBackupAsync(System.Xml.Linq.XElement element, RunningDomain running, CancellationToken cancellationToken)
    {
        var record = JobRecord.TakeCarried(Store.JobRecordFile(Name));
        BackupJob job;
        CarriedBackup carried;
        try
        {
            carried = CarriedBackup.FromElement(element);
            var sources = carried.Disks.Select(d => running.DiskByTarget(d.Target) is { } disk
                ? new BackupDiskSource(d.Target, disk.LiveImage, null, disk.Definition.SourcePath!, disk.Format)
                : throw new BackupJobException(BackupErrorReason.NoSuchDisk, $"no disk named '{d.Target}'")).ToList();
            job = await BackupJob.ResumeAsync(carried, sources, new BackupJobOptions
            {
                OnCopyBeforeWriteError = carried.Policy,
                ReuseExternal = carried.ReuseExternal,
                TimeProvider = Clock,
                LoggerFactory = _host.LoggerFactory,
                StoreWrapper = BackupStoreWrapper,
                TlsDirectory = _host.BackupTlsDirectory,
                TlsVerifyPeer = _host.BackupTlsVerifyPeer,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is Formats.DocumentException or BackupJobException or IOException or UnauthorizedAccessException or StorageException)
        {
            Logger.LogError("domain {Domain}: the backup job the previous host left running cannot go on: {Error}", Name, e.Message);
            foreach (var file in record.CleanUpNow())
            {
                Logger.LogWarning("removed {File}, left by the backup job that could not go on", file);
            }

            return;
        }

        using (var closure = await running.Barrier.CloseAsync(CancellationToken.None).ConfigureAwait(false))
        {
            foreach (var disk in carried.Disks)
            {
                running.DiskByTarget(disk.Target)!.Guest.SetInterceptor(job.InterceptorFor(disk.Target), closure);
            }
        }

        // The stores keep the indexes libvirt numbered them with; a later job's come after.
        Nodes.Continue(carried.Definition.Disks.Select(d => d.Store?.Index ?? 0).DefaultIfEmpty().Max());
        var backup = new DomainBackup(this, job, running, record, [.. carried.Disks.Select(d => d.Target)]);
        lock (_backupLock)
        {
            _backup = backup;
            _completedBackup = null;
        }

        job.Start();
        Logger.LogInformation("domain {Domain}: the {Mode} backup of {Disks} the previous host left running goes on", Name, BackupNames.Of(job.Mode), string.Join(", ", backup.Targets));
    }

    /// <summary>The domain stops: its backup is aborted and has ended before the disks close (spec §6.11).</summary>
    private async Task EndBackupForStopAsync()
    {
        if (Backup is { } backup)
        {
            await backup.Job.AbortForDomainStopAsync().ConfigureAwait(false);
            await backup.Completion.ConfigureAwait(false);
        }
    }
}
