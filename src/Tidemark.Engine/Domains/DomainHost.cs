using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.State;
using Tidemark.Formats;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// The engine's entry point: the domains defined in one state directory, what libvirt's
/// connection driver offers for them (lookup by name, UUID or id; list; define; undefine), and
/// through each <see cref="Domain"/> its life cycle and checkpoints.
/// </summary>
/// <remarks>
/// Opening a host reloads every domain, its checkpoints and its current checkpoint (spec §1,
/// §6.1), and removes what a crash left behind: temporary files of metadata writes
/// (<see cref="AtomicFile"/>), the files of jobs (<see cref="JobRecord"/>) and
/// the stray bitmaps of checkpoint creations a crash cut short (<see cref="CheckpointCreationRecord"/>).
/// A domain that was running when its host was killed comes back shut off (crashed): the
/// process that served its disks is gone, and with it the guests' connections. Disposing the
/// host stops every running domain cleanly; <see cref="CloseKeepingDomainsAsync"/> instead leaves
/// them to the next host, which starts them again as they were (libvirtd's restart, which the
/// QEMU processes outlive).
/// </remarks>
public sealed class DomainHost : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly List<Domain> _domains = [];

    // Names that domains being renamed are taking (under _lock): no define or create takes them meanwhile.
    private readonly Dictionary<string, Domain> _incomingNames = new(StringComparer.Ordinal);
    private int _lastId;

    private DomainHost(StateDirectory state, TimeProvider clock, ILoggerFactory? loggerFactory)
    {
        State = state;
        Clock = clock;
        LoggerFactory = loggerFactory;
        Logger = (ILogger?)loggerFactory?.CreateLogger<DomainHost>() ?? NullLogger.Instance;
    }

    /// <summary>The state directory.</summary>
    public StateDirectory State { get; }

    /// <summary>
    /// <c>backup_tls_x509_cert_dir</c>: where a pull backup with <c>tls='yes'</c> finds
    /// <c>ca-cert.pem</c>, <c>server-cert.pem</c> and <c>server-key.pem</c>, read when each job
    /// begins. Null refuses such a backup ("backup TLS directory not configured", spec §6.7 step 6).
    /// </summary>
    public string? BackupTlsDirectory { get; set; }

    /// <summary><c>backup_tls_x509_verify</c>: a TLS pull client must present a certificate signed by the CA.</summary>
    public bool BackupTlsVerifyPeer { get; set; } = true;

    /// <summary>
    /// How long a backup begun while another backup of the same domain runs waits for that
    /// one to end before it fails: libvirt's <c>VIR_JOB_WAIT_TIME</c>, 30 s, the wait of
    /// virDomainObjBeginJobInternal for the domain's async job (spec §6.7 step 2).
    /// </summary>
    public TimeSpan JobWaitTime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Files that jobs cut short by a crash had created, removed when the host was opened.</summary>
    public IReadOnlyList<string> RemovedJobFiles { get; private set; } = [];

    internal TimeProvider Clock { get; }

    internal ILoggerFactory? LoggerFactory { get; }

    /// <summary>
    /// A guest request's I/O failed on a running domain's disk, whatever its error policy made of
    /// it (raised on the request's thread; a handler must not wait on the domain).
    /// </summary>
    public event EventHandler<GuestIoErrorEventArgs>? GuestIoError;

    internal void Announce(GuestIoErrorEventArgs error)
    {
        try
        {
            GuestIoError?.Invoke(this, error);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // An observer's failure is no reason to change what the guest's request comes to.
            Logger.LogError(e, "domain {Domain}: announcing an I/O error failed", error.Domain.Name);
        }
    }

    internal ILogger Logger { get; }

    /// <summary>Opens the host on <paramref name="stateRoot"/> (created when missing) and reloads what it holds.</summary>
    /// <param name="stateRoot">The state directory (<see cref="StateDirectory.DefaultRoot"/> is the usual one).</param>
    /// <param name="clock">Where checkpoint creation times come from; the system clock when null.</param>
    /// <param name="loggerFactory">Logging; none when null.</param>
    /// <param name="cancellationToken">Cancels the reload.</param>
    public static async Task<DomainHost> OpenAsync(string stateRoot, TimeProvider? clock = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        var host = new DomainHost(new StateDirectory(stateRoot), clock ?? TimeProvider.System, loggerFactory);

        // Before anything reads or writes the directory: a kill during a metadata write leaves
        // its temporary file beside an intact target (AtomicFile).
        foreach (var file in host.State.RemoveStrayTemporaryFiles())
        {
            host.Logger.LogWarning("removed {File}, left by a metadata write that a crash cut short", file);
        }

        host.RemovedJobFiles = JobRecord.CleanUp(host.State.JobsDirectory);
        foreach (var file in host.RemovedJobFiles)
        {
            host.Logger.LogWarning("removed {File}, left by a job that a crash cut short", file);
        }

        // Renames a kill cut short: finished when their new definition was written, else
        // forgotten, before any definition is read (DomainRenameRecord).
        foreach (var (oldName, newName) in DomainRenameRecord.Pending(host.State, f => host.Logger.LogWarning("removed {File}: not a rename record", f)))
        {
            DomainRenameRecord.Finish(host.State, oldName, newName);
            host.Logger.LogWarning("completed or undid the rename of domain {Domain} to {NewName}, which a crash cut short", oldName, newName);
        }

        foreach (var file in host.State.DomainFiles())
        {
            cancellationToken.ThrowIfCancellationRequested();
            DomainDefinition definition;
            try
            {
                definition = DomainParser.Parse(await File.ReadAllTextAsync(file, cancellationToken).ConfigureAwait(false), file, cancellationToken);
            }
            catch (DocumentException e)
            {
                host.Logger.LogError("skipping {File}: {Error}", file, e.Message);
                continue;
            }

            var tree = await LoadCheckpointsAsync(host, definition.Name, cancellationToken).ConfigureAwait(false);
            host._domains.Add(new Domain(host, definition, ParseUuid(definition), persistent: true, tree));
        }

        // A stop closes the domain's guest socket, which removes its file; a file still there is
        // the socket of a domain that ran when its host was killed. It is stale (this process
        // holds the state directory, so no one listens on it) and goes; the domain crashed.
        foreach (var domain in host._domains)
        {
            var socket = host.State.SocketPath(domain.Name);
            if (File.Exists(socket))
            {
                domain.EndedByHostCrash = true;
                File.Delete(socket);
                TransientDisks.DeleteLeftOverlays(domain.Definition);
                host.Logger.LogWarning("domain {Domain} was running when its host was killed: it is shut off (crashed)", domain.Name);
            }
        }

        // A transient domain lives only in this process: a kill ends it without the removal of
        // its checkpoint metadata that its stop does (spec §4.5; libvirt drops it when it
        // reconnects to the dead QEMU), so a later domain of the same name would inherit it.
        foreach (var domain in host.State.CheckpointDirectoriesWithoutDomain())
        {
            host.State.DeleteCheckpointDirectory(domain);
            host.Logger.LogWarning("removed the checkpoint metadata of domain {Domain}: no longer defined (a transient domain ended by a crash)", domain);
        }

        // Checkpoint creations on inactive domains that a crash cut short: the checkpoint
        // exists, or its stray bitmaps are removed (CheckpointCreationRecord).
        var pending = CheckpointCreationRecord.Pending(host.State.JobsDirectory, f => host.Logger.LogWarning("removed {File}: not a checkpoint creation record", f));
        foreach (var record in pending)
        {
            if (host.Find(d => d.Name == record.Domain) is { } domain)
            {
                await domain.Checkpoints.FinishInterruptedCreationAsync(record, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                record.Complete();
            }
        }

        await host.ReconnectDomainsAsync(cancellationToken).ConfigureAwait(false);

        // Backup jobs handed over with a domain that was not taken up (the hand-over did not
        // finish, or the domain could not start): their files go, as a crashed job's.
        var uncarried = JobRecord.CleanUp(host.State.JobsDirectory, "*.carried");
        foreach (var file in uncarried)
        {
            host.Logger.LogWarning("removed {File}, left by a backup job no host took up", file);
        }

        host.RemovedJobFiles = [.. host.RemovedJobFiles, .. uncarried];
        return host;
    }

    /// <summary>
    /// Starts again the domains a previous host left running (<see cref="CloseKeepingDomainsAsync"/>),
    /// in the state they had: id, running definition, paused or not, sockets. A domain that
    /// cannot start (a disk gone or locked meanwhile) stays shut off, <see cref="Domain.EndedAtReconnect"/>;
    /// a transient one then disappears with its checkpoint metadata, as at its stop.
    /// </summary>
    private async Task ReconnectDomainsAsync(CancellationToken cancellationToken)
    {
        foreach (var file in State.StatusFiles().ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            DomainStatus status;
            try
            {
                status = await DomainStatus.ReadAsync(file, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is DocumentException or IOException)
            {
                Logger.LogError("skipping {File}: {Error}", file, e.Message);
                AtomicFile.Delete(file);
                continue;
            }

            var name = status.Definition.Name;
            var uuid = ParseUuid(status.Definition);
            var domain = Find(d => d.Name == name);

            // A hand-over a kill cut short, or a record beside a stale socket (the host it was
            // left to had started the domain and was killed): a crash, which the socket check
            // above has reported for a persistent domain. A persistent domain of that name with
            // another UUID was defined behind this state directory's back.
            var socket = State.SocketPath(name);
            var crashed = domain is { EndedByHostCrash: true } || File.Exists(socket) || !status.HandedOver;
            if (crashed || Path.GetFileNameWithoutExtension(file) != name || (domain is not null && domain.Uuid != uuid))
            {
                File.Delete(socket);
                if (crashed && domain is not null)
                {
                    domain.EndedByHostCrash = true;
                }

                if (crashed)
                {
                    TransientDisks.DeleteOverlays(status.Definition);
                }

                Logger.LogWarning("removed {File}: {Why}", file, crashed ? "the domain it records was running when its host was killed" : "the domain it records is not the one defined");
                AtomicFile.Delete(file);
                if (domain is null)
                {
                    DropTransientCheckpoints(name);
                }

                continue;
            }

            var transient = domain is null;
            if (domain is null)
            {
                domain = new Domain(this, status.Definition, uuid, persistent: false, await LoadCheckpointsAsync(this, name, cancellationToken).ConfigureAwait(false));
                lock (_lock)
                {
                    _domains.Add(domain);
                }
            }

            try
            {
                await domain.ReconnectAsync(status, cancellationToken).ConfigureAwait(false);
                lock (_lock)
                {
                    _lastId = Math.Max(_lastId, status.Id);
                }

                Logger.LogInformation("domain {Domain} started again as the previous host left it", name);
            }
            catch (Exception e) when (e is not OperationCanceledException && e is not OutOfMemoryException)
            {
                Logger.LogError("domain {Domain} was running when its previous host closed, and cannot start again: {Error}", name, e.Message);
                if (transient)
                {
                    Forget(domain);
                    DropTransientCheckpoints(name);
                }
            }

            AtomicFile.Delete(file);
        }
    }

    private void DropTransientCheckpoints(string domain)
    {
        if (!File.Exists(State.DomainFile(domain)))
        {
            State.DeleteCheckpointDirectory(domain);
        }
    }

    /// <summary>
    /// Closes the host and leaves its running domains to the next host opened on this state
    /// directory, as libvirtd's stop leaves QEMU running: each domain's status is recorded
    /// (<c>run/&lt;domain&gt;.xml</c>), its guests' connections ended, its backup job stopped
    /// where it is for the next host to go on with, and its images flushed and closed with their
    /// bitmaps stored; the next
    /// <see cref="OpenAsync"/> starts it again as it was. The guests see their disks go away and
    /// come back on the same sockets: QEMU's NBD client with <c>reconnect-delay</c> holds their
    /// requests meanwhile and sends the unanswered ones again.
    /// </summary>
    public async ValueTask CloseKeepingDomainsAsync()
    {
        foreach (var domain in ListDomains())
        {
            try
            {
                await domain.HandOverAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The first record could not be written: the domain is stopped instead, as
                // DisposeAsync below does.
                Logger.LogError("domain {Domain} cannot be left running for the next host: {Error}", domain.Name, e.Message);
            }
        }

        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Every domain, in definition order.</summary>
    public IReadOnlyList<Domain> ListDomains()
    {
        lock (_lock)
        {
            return [.. _domains];
        }
    }

    /// <exception cref="EngineException">"no domain with matching name '%s'".</exception>
    public Domain LookupByName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Find(d => d.Name == name)
            ?? throw new EngineException(EngineErrorReason.NoSuchDomain, $"no domain with matching name '{name}'");
    }

    /// <exception cref="EngineException">"no domain with matching uuid '%s'".</exception>
    public Domain LookupByUuid(Guid uuid)
        => Find(d => d.Uuid == uuid)
           ?? throw new EngineException(EngineErrorReason.NoSuchDomain, $"no domain with matching uuid '{uuid:D}'");

    /// <exception cref="EngineException">"no domain with matching id %d".</exception>
    public Domain LookupById(int id)
        => Find(d => d.Id == id && d.IsActive)
           ?? throw new EngineException(EngineErrorReason.NoSuchDomain, $"no domain with matching id {id}");

    /// <summary>
    /// Defines a domain from its XML, or replaces the definition of the domain with the same
    /// name and UUID (a running domain takes it at its next start). A domain without a UUID
    /// gets a random one, as libvirt gives it. Written to <c>domains/&lt;name&gt;.xml</c>.
    /// </summary>
    /// <exception cref="DocumentException">The XML cannot be read or breaks the schema of its modelled part.</exception>
    /// <exception cref="EngineException">Another domain has the name or the UUID.</exception>
    public Task<Domain> DefineAsync(string xml, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(xml);
        return DefineAsync(DomainParser.Parse(xml, cancellationToken: cancellationToken), cancellationToken);
    }

    /// <summary>As <see cref="DefineAsync(string, CancellationToken)"/>, from a parsed definition.</summary>
    /// <exception cref="EngineException">Another domain has the name or the UUID.</exception>
    public async Task<Domain> DefineAsync(DomainDefinition parsed, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(parsed);
        DomainNames.Check(parsed.Name);
        DomainDisks.Check(parsed);
        GraphicsPasswords.Check(parsed);
        var definition = WithUuid(DiskDefaults.Apply(parsed));
        var uuid = ParseUuid(definition);
        while (true)
        {
            Domain? existing;
            var created = false;
            lock (_lock)
            {
                existing = _domains.Find(d => d.Name == definition.Name) ?? _incomingNames.GetValueOrDefault(definition.Name);
                if (existing is not null && existing.Uuid != uuid)
                {
                    throw new EngineException(EngineErrorReason.DomainExists, $"domain '{definition.Name}' already exists with uuid {existing.Uuid:D}");
                }

                if (existing is null && _domains.Find(d => d.Uuid == uuid) is { } other)
                {
                    throw new EngineException(EngineErrorReason.DomainExists, $"domain '{other.Name}' is already defined with uuid {uuid:D}");
                }

                if (existing is null)
                {
                    existing = new Domain(this, definition, uuid, persistent: true, new CheckpointTree());
                    _domains.Add(existing);
                    created = true;
                }
            }

            using var held = await existing.LockAsync(cancellationToken).ConfigureAwait(false);
            if (!created && !IsListed(existing))
            {
                // The define that added it failed while this one waited, and took it back.
                continue;
            }

            try
            {
                await existing.RedefineAsync(definition, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // A domain this define added is taken back unless its definition was stored
                // after all (as libvirt removes one whose definition it could not save).
                if (created && !File.Exists(State.DomainFile(definition.Name)))
                {
                    lock (_lock)
                    {
                        _domains.Remove(existing);
                    }
                }

                if (e is IOException or UnauthorizedAccessException)
                {
                    throw new EngineException(EngineErrorReason.StateWriteFailed, $"cannot save definition of domain '{definition.Name}': {e.Message}", e);
                }

                throw;
            }

            return existing;
        }
    }

    private bool IsListed(Domain domain)
    {
        lock (_lock)
        {
            return _domains.Contains(domain);
        }
    }

    /// <summary>
    /// Starts a domain from its XML without defining it (virDomainCreateXML): a transient
    /// domain, which disappears with its checkpoint metadata when it stops (spec §4.5). A
    /// defined, inactive domain of the same name and UUID starts with this definition instead
    /// and takes its own back when it stops, as libvirt's does. Nothing is written to the state
    /// directory: a transient domain lives only in this process.
    /// </summary>
    /// <exception cref="EngineException">Unknown flags; another domain has the name or the UUID; the domain of that name and UUID is running; the start failed (then no transient domain is left).</exception>
    public async Task<Domain> CreateAsync(DomainDefinition parsed, DomainStartFlags flags = DomainStartFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(parsed);
        Flags.Check(flags, DomainStartFlags.GuestTcp | DomainStartFlags.Paused, "virDomainCreateXML");
        DomainNames.Check(parsed.Name);
        DomainDisks.Check(parsed);
        GraphicsPasswords.Check(parsed);
        var definition = WithUuid(DiskDefaults.Apply(parsed));
        var uuid = ParseUuid(definition);

        // The new domain's lock is held from before it is listed until it has started (or is
        // gone again), so no other call can act on it in between.
        var created = new Domain(this, definition, uuid, persistent: false, new CheckpointTree());
        using var held = await created.LockAsync(cancellationToken).ConfigureAwait(false);
        Domain? existing;
        lock (_lock)
        {
            // libvirt's order (virDomainObjListAddLocked): by UUID first, then by name.
            existing = _domains.Find(d => d.Uuid == uuid);
            if (existing is not null && existing.Name != definition.Name)
            {
                throw new EngineException(EngineErrorReason.DomainExists, $"domain '{existing.Name}' is already defined with uuid {uuid:D}");
            }

            if (existing is null && (_domains.Find(d => d.Name == definition.Name) ?? _incomingNames.GetValueOrDefault(definition.Name)) is { } other)
            {
                throw new EngineException(EngineErrorReason.DomainExists, $"domain '{definition.Name}' already exists with uuid {other.Uuid:D}");
            }

            if (existing is null)
            {
                _domains.Add(created);
            }
        }

        if (existing is not null)
        {
            await existing.StartAsync(definition, flags, cancellationToken).ConfigureAwait(false);
            return existing;
        }

        try
        {
            await created.StartLockedAsync(flags, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Forget(created);
            throw;
        }

        return created;
    }

    /// <summary>
    /// Renames an inactive, persistent domain (virDomainRename, spec §4.5): its definition and
    /// its checkpoint metadata move to the new name; its UUID, checkpoints, current checkpoint
    /// and bitmaps stay as they are. The checks and their words are libvirt's, in its order.
    /// </summary>
    /// <exception cref="EngineException">
    /// "cannot rename active domain"; "Can't rename domain to itself"; "domain with name '%s'
    /// already exists"; a name with '/' (or "." or ".."); the state directory cannot be written.
    /// </exception>
    public async Task RenameAsync(Domain domain, string newName, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(newName);
        using var held = await domain.LockAsync(cancellationToken).ConfigureAwait(false);
        if (Find(d => d == domain) is null)
        {
            throw new EngineException(EngineErrorReason.NoSuchDomain, $"no domain with matching name '{domain.Name}'");
        }

        if (domain.IsActive)
        {
            throw new EngineException(EngineErrorReason.RenameRefused, "cannot rename active domain");
        }

        if (!domain.IsPersistent)
        {
            throw new EngineException(EngineErrorReason.RenameRefused, "cannot rename a transient domain");
        }

        if (newName == domain.Name)
        {
            throw new EngineException(EngineErrorReason.DomainNameTaken, "Can't rename domain to itself");
        }

        lock (_lock)
        {
            if (_domains.Exists(d => d.Name == newName) || _incomingNames.ContainsKey(newName))
            {
                throw new EngineException(EngineErrorReason.DomainNameTaken, $"domain with name '{newName}' already exists");
            }

            DomainNames.Check(newName);
            _incomingNames.Add(newName, domain);
        }

        try
        {
            await domain.RenameLockedAsync(newName, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_lock)
            {
                _incomingNames.Remove(newName);
            }
        }
    }

    /// <summary>
    /// Undefines <paramref name="domain"/> (spec §4.5): an inactive domain disappears (with
    /// checkpoints only under <see cref="DomainUndefineFlags.CheckpointsMetadata"/>, which drops
    /// their metadata and leaves the bitmaps in the images); a running one becomes transient.
    /// </summary>
    /// <exception cref="EngineException">Unknown flags; "cannot delete inactive domain with %d checkpoints"; a transient domain.</exception>
    public Task UndefineAsync(Domain domain, DomainUndefineFlags flags = DomainUndefineFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (Find(d => d == domain) is null)
        {
            throw new EngineException(EngineErrorReason.NoSuchDomain, $"no domain with matching name '{domain.Name}'");
        }

        Flags.Check(
            flags,
            DomainUndefineFlags.ManagedSave | DomainUndefineFlags.SnapshotsMetadata | DomainUndefineFlags.Nvram | DomainUndefineFlags.KeepNvram
                | DomainUndefineFlags.CheckpointsMetadata | DomainUndefineFlags.Tpm | DomainUndefineFlags.KeepTpm,
            "qemuDomainUndefineFlags");
        if (flags.HasFlag(DomainUndefineFlags.Nvram) && flags.HasFlag(DomainUndefineFlags.KeepNvram))
        {
            // qemuDomainUndefineFlags checks this pair itself, after the flags.
            throw new EngineException(EngineErrorReason.KeepAndDeleteNvram, "cannot both keep and delete nvram");
        }

        return domain.UndefineAsync(flags, cancellationToken);
    }

    /// <summary>Stops every running domain (flushing and closing its images).</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var domain in ListDomains().Where(d => d.IsActive))
        {
            try
            {
                await domain.DestroyAsync().ConfigureAwait(false);
            }
            catch (EngineException e)
            {
                Logger.LogError("stopping domain {Domain}: {Error}", domain.Name, e.Message);
            }
        }

        foreach (var domain in ListDomains())
        {
            domain.CloseFdGroups();
        }
    }

    internal int NextId() => Interlocked.Increment(ref _lastId);

    internal void Forget(Domain domain)
    {
        lock (_lock)
        {
            _domains.Remove(domain);
        }

        domain.CloseFdGroups();
    }

    private Domain? Find(Predicate<Domain> match)
    {
        lock (_lock)
        {
            return _domains.Find(match);
        }
    }

    private static async Task<CheckpointTree> LoadCheckpointsAsync(DomainHost host, string domain, CancellationToken cancellationToken)
    {
        var definitions = new List<CheckpointDefinition>();
        foreach (var file in host.State.CheckpointFiles(domain))
        {
            try
            {
                definitions.Add(CheckpointParser.Parse(await File.ReadAllTextAsync(file, cancellationToken).ConfigureAwait(false), CheckpointParseMode.Redefine, source: file));
            }
            catch (DocumentException e)
            {
                // libvirt skips metadata files that fail to parse (spec §6.1).
                host.Logger.LogError("skipping checkpoint metadata {File}: {Error}", file, e.Message);
            }
        }

        var tree = CheckpointTree.Load(definitions, out var consistent);
        if (!consistent)
        {
            host.Logger.LogError("Checkpoints have inconsistent relations for domain {Domain}", domain);
        }

        return tree;
    }

    private static Guid ParseUuid(DomainDefinition definition)
        => definition.Uuid is { } text && Guid.TryParse(text, out var uuid) ? uuid : Guid.Empty;

    // libvirt generates a UUID for a domain defined without one; it is written into the
    // definition so that it stays the same across restarts.
    private static DomainDefinition WithUuid(DomainDefinition definition)
    {
        if (definition.Uuid is not null)
        {
            return definition;
        }

        var element = new System.Xml.Linq.XElement(definition.Element);
        element.Element("name")!.AddAfterSelf(new System.Xml.Linq.XElement("uuid", Guid.NewGuid().ToString("D")));
        return DomainParser.Parse(element);
    }
}
