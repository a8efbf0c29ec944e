using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Engine.Disks;
using Tidemark.Formats.Backups;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// A running backup of a domain's disks: push (Tidemark writes each disk into a target) or pull
/// (Tidemark serves each disk's point-in-time view over NBD until aborted), full or incremental
/// per disk (spec §6.7–§6.11; design.md, "The instant").
/// </summary>
/// <remarks>
/// <para>How a domain begins a backup:</para>
/// <list type="number">
/// <item>Close its instant barrier (no guest request in flight), take the incremental bitmaps' snapshots.</item>
/// <item><see cref="PrepareAsync"/>: stores created, the point in time fixed (what each disk
/// must copy), the pull server bound. Nothing is copied yet.</item>
/// <item>Install <see cref="InterceptorFor"/> on each disk, then open the barrier.</item>
/// <item><see cref="Start"/>. The job then ends by itself (push) or at <see cref="AbortAsync"/>
/// (pull); <see cref="Completion"/> gives the completed statistics. Remove the interceptors
/// after that; until then they pass guest writes untouched once the job has ended.</item>
/// </list>
/// <para>The phases and the moves between them are listed in <see cref="BackupJobStates"/>.
/// <see cref="_lock"/> guards <see cref="_phase"/> and <see cref="_firstError"/>.</para>
/// </remarks>
public sealed partial class BackupJob : IAsyncDisposable
{
    /// <summary>Push copies in flight per disk (qemu-img convert's 8 coroutines, halved: guest writes copy too).</summary>
    private const int PushWorkersPerDisk = 4;

    private readonly Lock _lock = new();
    private readonly BackupDefinition _definition;
    private readonly IReadOnlyList<DiskBackup> _disks;
    private readonly NbdServer? _server;
    private readonly BackupJobOptions _options;
    private readonly ILogger _logger;
    private readonly long _started;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<BackupJobInfo> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private BackupJobPhase _phase = BackupJobPhase.Prepared;
    private Exception? _firstError;
    private TimeSpan? _elapsedAtEnd;
    private Task? _termination;

    /// <summary>Set when the domain's stop ends the job: it ends cancelled, even a pull. Guarded by <see cref="_lock"/>.</summary>
    private bool _domainStopped;

    /// <summary>Set when the job is left to the next host (<see cref="HandOverAsync"/>). Guarded by <see cref="_lock"/>.</summary>
    private bool _handedOver;

    /// <summary>Push: the copy, from <see cref="Start"/> on.</summary>
    private Task? _push;

    /// <summary>Set once the pull server has been stopped. Guarded by <see cref="_lock"/>.</summary>
    private bool _serverStopped;

    private BackupJob(BackupDefinition definition, IReadOnlyList<DiskBackup> disks, NbdServer? server, BackupJobOptions options, long started)
    {
        _definition = definition;
        _disks = disks;
        _server = server;
        _options = options;
        _started = started;
        _logger = options.LoggerFactory?.CreateLogger<BackupJob>() ?? NullLogger<BackupJob>.Instance;
    }

    /// <summary>Push or pull.</summary>
    public BackupMode Mode => _definition.Mode;

    /// <summary>Where the job is.</summary>
    public BackupJobPhase Phase
    {
        get
        {
            lock (_lock)
            {
                return _phase;
            }
        }
    }

    /// <summary>The document with each disk's job state, as the status XML keeps it (spec §3.6).</summary>
    public BackupDefinition Definition => _definition with
    {
        Disks = [.. _definition.Disks.Select(d => _disks.FirstOrDefault(j => j.Disk.Name == d.Name) is { } job ? d with { State = job.State } : d)],
    };

    /// <summary>The job's statistics now (<c>virDomainGetJobStats</c>); the completed ones once it has ended.</summary>
    public BackupJobInfo Info
    {
        get
        {
            BackupJobPhase phase;
            string? error;
            TimeSpan elapsed;
            lock (_lock)
            {
                phase = _phase;
                error = _firstError?.Message;
                elapsed = _elapsedAtEnd ?? _options.TimeProvider.GetElapsedTime(_started);
            }

            var push = Mode == BackupMode.Push;
            return new BackupJobInfo(
                Mode,
                phase,
                BytesProcessed: push ? _disks.Sum(d => d.CopyBeforeWrite.CopiedBytes + d.SkippedBytes) : 0,
                BytesTotal: push ? _disks.Sum(d => d.CopyBeforeWrite.InitialBytes + d.SkippedBytes) : 0,
                ScratchBytesInUse: push ? 0 : _disks.Sum(d => d.CopyBeforeWrite.CopiedBytes),
                ScratchBytesTotal: push ? 0 : _disks.Sum(d => d.Store.VirtualSize),
                elapsed,
                error);
        }
    }

    /// <summary>Completes with the completed statistics once the job has ended and cleaned up; never faults.</summary>
    public Task<BackupJobInfo> Completion => _completion.Task;

    /// <summary>The pull server's bound addresses (a TCP port 0 in the document is resolved here); empty for push.</summary>
    public IReadOnlyList<System.Net.EndPoint> ServerEndPoints => _server?.EndPoints ?? [];

    /// <summary>
    /// Prepares a backup at the domain's instant: call it with the barrier closed, so that each
    /// live image is the disk at the job's point in time. Creates the stores (announcing each
    /// through <see cref="BackupJobOptions.OnCreatingFile"/> first), records per disk what the
    /// job must copy, arms copy-before-write and, for a pull, binds the NBD server. On failure
    /// everything created is removed (spec §6.7 step 16).
    /// </summary>
    /// <param name="aligned">The backup document, aligned with the domain and with the driver defaults applied (<see cref="BackupDefaults.Apply"/>).</param>
    /// <param name="disks">The live image and, for an incremental disk, its dirty bitmap snapshot, of every disk the document backs up.</param>
    /// <exception cref="BackupJobException">No disk selected, a store exists or cannot be created, the server cannot start; the message is libvirt's where it has one.</exception>
    /// <exception cref="ArgumentException">A backed-up disk's source is missing, or its bitmap does not match its mode.</exception>
    public static async Task<BackupJob> PrepareAsync(BackupDefinition aligned, IReadOnlyList<BackupDiskSource> disks, BackupJobOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(aligned);
        ArgumentNullException.ThrowIfNull(disks);
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        var started = options.TimeProvider.GetTimestamp();
        var selected = aligned.Disks.Where(d => d.Backup).ToList();
        if (selected.Count == 0)
        {
            throw new BackupJobException(BackupErrorReason.NoDisksSelected, "no disks selected for backup");
        }

        if (aligned.Mode == BackupMode.Pull && aligned.Server is null)
        {
            throw new ArgumentException("a pull backup needs its <server>: apply BackupDefaults first", nameof(aligned));
        }

        var created = new List<string>();
        var stores = new List<IBlockImage>();
        var jobs = new List<DiskBackup>();
        NbdServer? server = null;
        BackupJob? job = null;
        try
        {
            foreach (var disk in selected)
            {
                var source = disks.FirstOrDefault(s => s.Target == disk.Name)
                    ?? throw new BackupJobException(BackupErrorReason.NoSuchDisk, $"no disk named '{disk.Name}'");
                if ((disk.Mode == BackupDiskMode.Incremental) != (source.Incremental is not null))
                {
                    throw new ArgumentException($"disk '{disk.Name}' is {BackupNames.Of(disk.Mode == BackupDiskMode.Default ? BackupDiskMode.Full : disk.Mode)} but its source {(source.Incremental is null ? "has no" : "has a")} bitmap", nameof(disks));
                }

                var store = await BackupStoreFile.OpenAsync(aligned.Mode, disk, source, options, created.Add, cancellationToken).ConfigureAwait(false);
                stores.Add(store.Image);
                jobs.Add(await ArmAsync(aligned.Mode, disk, source, store, created.Contains(disk.Store!.Path!) ? disk.Store.Path : null, options, e => job?.OnCopyBeforeWriteFailed(e), cancellationToken).ConfigureAwait(false));
            }

            if (aligned.Mode == BackupMode.Pull)
            {
                server = await PullServer.StartAsync(aligned.Server!, jobs.Select(j => j.Export!), options, cancellationToken).ConfigureAwait(false);
            }

            job = new BackupJob(aligned, jobs, server, options, started);
            return job;
        }
        catch
        {
            await ReleaseAsync(server, stores, jobs).ConfigureAwait(false);

            // Each file as far as it got: one whose creation failed may not exist, nor its
            // directory (File.Delete throws then), and the creation's own error is the one to tell.
            foreach (var path in created)
            {
                try
                {
                    File.Delete(path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    options.LoggerFactory?.CreateLogger<BackupJob>().LogWarning(e, "removing backup store '{Path}' failed", path);
                }
            }

            throw;
        }
    }

    /// <summary>Closes the server and the stores of a job that did not come to be, and lets others write its disks again.</summary>
    private static async Task ReleaseAsync(NbdServer? server, List<IBlockImage> stores, List<DiskBackup> disks)
    {
        foreach (var disk in disks)
        {
            disk.WriterExclusion?.Dispose();
        }

        if (server is not null)
        {
            await server.DisposeAsync().ConfigureAwait(false);
            server.Options.Tls?.Dispose();
        }

        foreach (var store in stores)
        {
            await store.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The copy-before-write of disk <paramref name="target"/>, to install on the running disk before the barrier opens.</summary>
    /// <exception cref="ArgumentException">The job does not back up that disk.</exception>
    public IGuestWriteInterceptor InterceptorFor(string target)
        => _disks.FirstOrDefault(d => d.Disk.Name == target)?.CopyBeforeWrite
            ?? throw new ArgumentException($"the backup job has no disk named '{target}'", nameof(target));

    /// <summary>Push: starts copying; the job then ends by itself. Pull: the exports already serve; the job ends at abort.</summary>
    /// <exception cref="InvalidOperationException">The job was started, or has ended, already.</exception>
    public void Start()
    {
        lock (_lock)
        {
            if (_phase != BackupJobPhase.Prepared)
            {
                throw new InvalidOperationException($"the backup job is {_phase}, not prepared");
            }

            Move(BackupJobPhase.Running);
        }

        if (Mode == BackupMode.Push)
        {
            _push = Task.Run(RunPushAsync);
        }
    }

    /// <summary>
    /// Ends the job (<c>virDomainAbortJob</c>): a push stops copying and removes the targets it
    /// created; a pull stops serving and removes its scratch files. The returned task completes
    /// with the completed statistics; nothing is left to do when the job has ended already.
    /// </summary>
    public Task<BackupJobInfo> AbortAsync()
    {
        lock (_lock)
        {
            BeginTermination(cancel: true);
        }

        return Completion;
    }

    /// <summary>Whether the job was ended by its domain's stop (<see cref="AbortForDomainStopAsync"/>).</summary>
    public bool EndedByDomainStop
    {
        get
        {
            lock (_lock)
            {
                return _domainStopped;
            }
        }
    }

    /// <summary>Whether the job was left to the next host (<see cref="HandOverAsync"/>) rather than ended.</summary>
    public bool HandedOver
    {
        get
        {
            lock (_lock)
            {
                return _handedOver;
            }
        }
    }

    /// <summary>
    /// Ends the job because its domain stops (shutdown, destroy): as <see cref="AbortAsync"/>,
    /// but the job ends cancelled whatever its mode, where an aborted pull counts as completed
    /// (spec §6.11: "If the domain stops … during a backup, the backup is terminated as
    /// CANCELED").
    /// </summary>
    public Task<BackupJobInfo> AbortForDomainStopAsync()
    {
        lock (_lock)
        {
            _domainStopped = true;
            BeginTermination(cancel: true);
        }

        return Completion;
    }

    /// <summary>Aborts a job that has not ended and waits for its cleanup.</summary>
    public async ValueTask DisposeAsync()
    {
        await AbortAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    private static async ValueTask<DiskBackup> ArmAsync(BackupMode mode, BackupDisk disk, BackupDiskSource source, OpenStore store, string? createdPath, BackupJobOptions options, Action<Exception> onFailure, CancellationToken cancellationToken)
    {
        var live = source.Live;
        var granularity = mode == BackupMode.Pull ? InstantClusters.ViewGranularity(live.VirtualSize) : InstantClusters.Granularity(store.Cluster, source.Incremental);

        // A pull view must show the whole disk as it was, whatever the client reads, so its
        // copy-before-write covers every allocated cluster even when the export's bitmap is
        // incremental (QEMU's fleecing uses sync=none: every cluster is copied on write).
        // A full push into a reused store writes every cluster, zeroes included, since the store
        // may hold anything (QEMU's sync=full writes zeroes to the target where the disk reads
        // as zeroes); into a store of its own, holes and zeroes are left out and stay sparse.
        var zeroData = mode == BackupMode.Pull ? new DirtyBitmap(Math.Max(1, live.VirtualSize), granularity) : null;
        var pending = source.Incremental is not null && mode == BackupMode.Push ? InstantClusters.Dirty(source.Incremental, live.VirtualSize, granularity)
            : mode == BackupMode.Push && store.Zeroes == ZeroClusters.WriteZeroes ? InstantClusters.All(live.VirtualSize, granularity)
            : await InstantClusters.AllocatedAsync(live, granularity, cancellationToken, zeroData).ConfigureAwait(false);
        var allocated = mode == BackupMode.Pull ? pending.Clone() : null;
        return Arm(mode, disk, source, store, createdPath, options, onFailure, new ArmedClusters(pending, allocated, zeroData, null));
    }

    /// <summary>The clusters a disk's job starts from: at its instant, or where a previous host left it.</summary>
    /// <param name="Pending">What copy-before-write still needs.</param>
    /// <param name="Allocated">Pull: clusters holding data at the instant.</param>
    /// <param name="ZeroData">Pull: clusters allocated at the instant that read as zeroes.</param>
    /// <param name="Carried">A job handed over: where its copying had got to.</param>
    private sealed record ArmedClusters(DirtyBitmap Pending, DirtyBitmap? Allocated, DirtyBitmap? ZeroData, CopyProgress? Carried);

    private static DiskBackup Arm(BackupMode mode, BackupDisk disk, BackupDiskSource source, OpenStore store, string? createdPath, BackupJobOptions options, Action<Exception> onFailure, ArmedClusters clusters)
    {
        var live = source.Live;
        var (pending, allocated, zeroData, carried) = clusters;
        var exclusion = ExcludeOtherWriters(live);

        // A push finds zero runs per block-copy cluster (64 KiB, or the store's cluster), not per
        // copy unit: QEMU's backup job copies in those clusters whatever the sync bitmap's
        // granularity (block_copy_calculate_cluster_size; backup_init_bcs_bitmap merges a coarser
        // bitmap into the finer copy bitmap), so the half of a 128 KiB dirty bit that reads as
        // zeroes becomes a zero cluster of the target, not zeroes written as data.
        var zeroUnit = mode == BackupMode.Pull ? pending.Granularity : InstantClusters.Granularity(store.Cluster, null);
        var aside = new CopyAsideStore(store.Image, (int)zeroUnit, store.Zeroes);
        var copyBeforeWrite = new CopyBeforeWrite(disk.Name, live, aside, pending, trackCopies: mode == BackupMode.Pull, options.OnCopyBeforeWriteError, onFailure, carried);
        NbdExport? export = null;
        if (mode == BackupMode.Pull)
        {
            var view = new PointInTimeView(copyBeforeWrite, allocated!, live.VirtualSize, zeroData);
            export = new NbdExport(disk.ExportName ?? disk.Name, view)
            {
                ReadOnly = true,

                // Every connection reads the same view; QEMU advertises multi-conn on read-only exports.
                MultiConn = true,
                DirtyBitmaps = source.Incremental is { } bitmap ? [new DirtyBitmapSource(disk.ExportBitmap ?? BackupDefaults.ExportBitmapPrefix + disk.Name, bitmap)] : [],
            };
        }

        // QEMU's full backup job counts the whole disk (its block-copy bitmap starts all set,
        // block/backup.c backup_init_bcs_bitmap) and passes the zero ranges as it meets them,
        // so libvirt reports the disk's size as total and processed; the holes a full push
        // into a fresh target leaves alone count the same, as done from the start.
        var skipped = mode == BackupMode.Push && source.Incremental is null ? live.VirtualSize - copyBeforeWrite.InitialBytes : 0;
        return new DiskBackup(disk, source, store.Image, createdPath, copyBeforeWrite, export)
        {
            WriterExclusion = exclusion,
            SkippedBytes = skipped,
            StoreZeroes = store.Zeroes,
            Allocated = allocated,
            ZeroData = zeroData,
        };
    }

    /// <summary>
    /// Denies other processes the write permission on a disk opened sharing it (a shareable raw
    /// disk) for as long as the job runs: their writes would pass by copy-before-write. QEMU's
    /// copy-before-write filter unshares WRITE on the node it is put above, so libvirt's
    /// backup of a disk another VM has open for writing fails in the transaction that starts
    /// the job, and that VM cannot start while the job runs.
    /// </summary>
    /// <exception cref="BackupJobException"><see cref="BackupErrorReason.DiskWrittenElsewhere"/>, in libvirt's words.</exception>
    private static IDisposable? ExcludeOtherWriters(IBlockImage live)
    {
        try
        {
            return live is RawImage raw ? raw.ExcludeOtherWriters() : null;
        }
        catch (StorageException e) when (e.Reason == StorageErrorReason.Locked)
        {
            throw new BackupJobException(BackupErrorReason.DiskWrittenElsewhere, "unable to execute QEMU command 'transaction': Could not replace node: Failed to get shared \"write\" lock", e);
        }
    }

    private async Task RunPushAsync()
    {
        try
        {
            await Task.WhenAll(_disks.Select(PushDiskAsync)).ConfigureAwait(false);
            foreach (var disk in _disks)
            {
                await disk.Store.FlushAsync(_stop.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (!_stop.IsCancellationRequested)
        {
            OnDiskFailed(e);
            return;
        }
        catch (OperationCanceledException)
        {
            return;
        }

        lock (_lock)
        {
            if (_termination is null)
            {
                foreach (var disk in _disks)
                {
                    disk.Conclude(BackupDiskState.Complete);
                }

                BeginTermination(cancel: false);
            }
        }
    }

    private async Task PushDiskAsync(DiskBackup disk)
    {
        var bufferSize = (int)Math.Max(CopyBeforeWrite.MaxCopyBytes, disk.CopyBeforeWrite.Cluster);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, PushWorkersPerDisk).Select(_ => Task.Run(async () =>
            {
                var buffer = new byte[bufferSize];
                while (await disk.CopyBeforeWrite.CopyNextAsync(buffer, _stop.Token).ConfigureAwait(false) > 0)
                {
                }
            }))).ConfigureAwait(false);
        }
        catch (Exception) when (!_stop.IsCancellationRequested)
        {
            disk.Conclude(BackupDiskState.Failed);
            throw;
        }
    }

    private void OnCopyBeforeWriteFailed(Exception error)
    {
        var disk = _disks.FirstOrDefault(d => d.CopyBeforeWrite.Failure == error);
        disk?.Conclude(BackupDiskState.Failed);
        OnDiskFailed(error);
    }

    /// <summary>A disk failed: the job fails, the other disks are cancelled (spec §6.11).</summary>
    private void OnDiskFailed(Exception error)
    {
        lock (_lock)
        {
            _firstError ??= error;
            _logger.LogWarning(error, "backup job failed");
            BeginTermination(cancel: true);
        }
    }

    /// <summary>
    /// Starts ending the job, once: from <see cref="BackupJobPhase.Cancelling"/> when
    /// <paramref name="cancel"/> (abort, failure), else from <see cref="BackupJobPhase.Running"/>
    /// (a push that copied everything). Called under <see cref="_lock"/>.
    /// </summary>
    private void BeginTermination(bool cancel)
    {
        if (_termination is not null || BackupJobStates.IsTerminal(_phase))
        {
            return;
        }

        if (cancel)
        {
            Move(BackupJobPhase.Cancelling);
        }

        _termination = Task.Run(TerminateAsync);
    }

    /// <summary>
    /// Ends the job: stops serving and copying,
    /// detaches copy-before-write, closes the stores, removes the files §6.9/§6.10 say to
    /// remove, then moves to the final phase (§6.11) and completes <see cref="Completion"/>.
    /// </summary>
    private async Task TerminateAsync()
    {
        try
        {
            await TerminateCoreAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Whatever went wrong, the job ends: a caller awaiting Completion (abort, dispose,
            // the daemon's job table) must never wait for ever.
            _logger.LogError(e, "ending the backup job failed");
            lock (_lock)
            {
                _firstError ??= e;
                _elapsedAtEnd ??= _options.TimeProvider.GetElapsedTime(_started);
                if (_phase == BackupJobPhase.Prepared)
                {
                    Move(BackupJobPhase.Cancelling);
                }

                if (!BackupJobStates.IsTerminal(_phase))
                {
                    Move(BackupJobPhase.Failed);
                }
            }
        }
        finally
        {
            _completion.TrySetResult(Info);
        }
    }

    private async Task TerminateCoreAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await StopServerAsync().ConfigureAwait(false);
        foreach (var disk in _disks)
        {
            await disk.CopyBeforeWrite.DetachAsync().ConfigureAwait(false);
            disk.WriterExclusion?.Dispose();
            disk.Conclude(BackupDiskState.Cancelled);
        }

        BackupJobPhase final;
        lock (_lock)
        {
            final = _firstError is not null ? BackupJobPhase.Failed
                : (Mode == BackupMode.Pull && !_domainStopped) || _phase == BackupJobPhase.Running ? BackupJobPhase.Completed
                : BackupJobPhase.Cancelled;
        }

        foreach (var disk in _disks)
        {
            try
            {
                await disk.Store.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // Any failure here, expected (I/O) or not, fails the job but not the cleanup of
                // the other stores and of the files below.
                _logger.LogWarning(e, "closing the backup store of disk '{Disk}' failed", disk.Disk.Name);
                lock (_lock)
                {
                    _firstError ??= e;
                }

                final = BackupJobPhase.Failed;
            }

            // A scratch is useless once the job has ended; a target is kept only by a completed push.
            if (disk.CreatedPath is not null && (Mode == BackupMode.Pull || final != BackupJobPhase.Completed))
            {
                TryDelete(disk.CreatedPath);
            }
        }

        lock (_lock)
        {
            _elapsedAtEnd = _options.TimeProvider.GetElapsedTime(_started);
            Move(final);
        }
    }

    private async Task StopServerAsync()
    {
        lock (_lock)
        {
            if (_server is null || _serverStopped)
            {
                return;
            }

            _serverStopped = true;
        }

        await _server.DisposeAsync().ConfigureAwait(false);
        _server.Options.Tls?.Dispose();
    }

    private void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning(e, "removing backup store '{Path}' failed", path);
        }
    }

    /// <summary>Moves to <paramref name="to"/>; the table in <see cref="BackupJobStates"/> must allow it. Called under <see cref="_lock"/>.</summary>
    private void Move(BackupJobPhase to)
    {
        if (!BackupJobStates.Allows(_phase, to))
        {
            throw new InvalidOperationException($"backup job cannot move from {_phase} to {to}");
        }

        _phase = to;
    }
}
