using System.Collections.Concurrent;
using System.Globalization;
using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Tidemark.Engine.Disks;
using Tidemark.Engine.Domains;
using Tidemark.Formats.Domains;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Server;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;
using EngineDomain = Tidemark.Engine.Domains.Domain;
using EngineState = Tidemark.Engine.Domains.DomainState;
using WireState = Tidemark.Remote.Protocol.DomainState;

namespace Tidemark.Daemon;

/// <summary>
/// The libvirt API (libvirt-rpc.md §5) over Tidemark's engine: what <see cref="RemoteServer"/>
/// serves. Domains are looked up by UUID first, as libvirt's drivers do with the domain a
/// client names; every engine error reaches the client with libvirt's code and text
/// (<see cref="WireErrors"/>). Life-cycle changes and ended jobs are announced through
/// <see cref="Events"/>.
/// </summary>
internal sealed partial class EngineHypervisor : IRemoteHypervisor
{
    /// <summary>The version a libvirt client sees (9.0.0): virtnbdbackup skips a capability check at ≥ 7.6.0.</summary>
    private const ulong LibraryVersion = 9_000_000;

    /// <summary>The hypervisor version, QEMU 7.2.0's, whose behaviour Tidemark's images and NBD server follow.</summary>
    private const ulong HypervisorVersion = 7_002_000;

    // virDomainShutoffReason values.
    private const int ShutoffUnknown = 0;
    private const int ShutoffShutdown = 1;
    private const int ShutoffDestroyed = 2;
    private const int ShutoffCrashed = 3;
    private const int ShutoffDaemon = 8;

    // virDomainGetHostnameFlags.
    private const uint HostnameFromLease = 1;
    private const uint HostnameFromAgent = 2;

    // virDomainRunningReason and virDomainPausedReason values.
    private const int RunningBooted = 1;
    private const int RunningUnpaused = 5;
    private const int PausedUser = 1;
    private const int PausedIoError = 5;

    // Lifecycle event details: VIR_DOMAIN_EVENT_STARTED_BOOTED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED
    // and VIR_DOMAIN_EVENT_RESUMED_UNPAUSED.
    private const int StartedBooted = 0;
    private const int SuspendedPaused = 0;
    private const int SuspendedIoError = 2;
    private const int ResumedUnpaused = 0;

    // More lifecycle event details: virDomainEventShutdownDetailType, virDomainEventStoppedDetailType.
    private const int ShutdownHost = 2;
    private const int StoppedDestroyed = 1;

    // virDomainEventUndefinedDetailType and virDomainEventDefinedDetailType: RENAMED.
    private const int UndefinedRenamed = 1;
    private const int DefinedRenamed = 2;

    // virConnectListAllDomainsFlags, in the groups libvirt filters by (a domain must match one set bit of each group used).
    private static readonly uint[] ListFilterGroups = [1 | 2, 4 | 8, 16 | 32 | 64 | 128, 256 | 512, 1024 | 2048, 4096 | 8192, 16384 | 32768];

    private readonly DomainHost _host;
    private readonly AutostartMarks _autostart;
    private readonly ILogger _logger;

    // virDomainShutoffReason of each domain stopped since the daemon started, as libvirt keeps
    // it in memory: SHUTDOWN (1) or DESTROYED (2); a domain not stopped since is UNKNOWN (0).
    private readonly ConcurrentDictionary<Guid, int> _shutoffReasons = new();


    public EngineHypervisor(DomainHost host, AutostartMarks autostart, ILogger logger)
    {
        _host = host;
        _autostart = autostart;
        _logger = logger;
        host.GuestIoError += OnGuestIoError;
    }

    /// <summary>How every start serves the disks (the daemon's <c>--guest-tcp</c>), whatever flags the caller gives.</summary>
    public DomainStartFlags StartFlags { get; init; }

    /// <summary>Where events go; set once the server exists.</summary>
    public DomainEventPublisher? Events { get; set; }

    public ValueTask OpenAsync(string? name, uint flags, CancellationToken cancellationToken)
    {
        ConnectionName.Check(name);
        return ValueTask.CompletedTask;
    }

    public ValueTask<string> GetTypeAsync(CancellationToken cancellationToken) => ValueTask.FromResult("QEMU");

    public ValueTask<ulong> GetVersionAsync(CancellationToken cancellationToken) => ValueTask.FromResult(HypervisorVersion);

    public ValueTask<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken) => ValueTask.FromResult(LibraryVersion);

    public ValueTask<string> GetHostnameAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Environment.MachineName);

    public ValueTask<string> GetUriAsync(CancellationToken cancellationToken) => ValueTask.FromResult("qemu:///system");

    public void ConnectionClosed(object connection)
    {
        foreach (var domain in _host.ListDomains())
        {
            domain.ReleaseFdGroups(connection);
        }
    }

    public ValueTask AssociateFdsAsync(RemoteDomain domain, string name, IReadOnlyList<SafeFileHandle> fds, uint flags, object connection, CancellationToken cancellationToken) => Call(() =>
    {
        EngineDomain found;
        try
        {
            found = Find(domain);
        }
        catch
        {
            foreach (var fd in fds)
            {
                fd.Dispose();
            }

            throw;
        }

        found.AssociateFds(name, fds, (FdAssociateFlags)flags, connection);
    });

    public ValueTask<IReadOnlyList<RemoteDomain>> ListAllDomainsAsync(uint flags, CancellationToken cancellationToken)
    {
        if ((flags & ~0xFFFFu) != 0)
        {
            throw Unsupported(flags & ~0xFFFFu, "virConnectListAllDomains");
        }

        IReadOnlyList<RemoteDomain> list = [.. _host.ListDomains().Where(d => Matches(d, flags)).Select(Ref)];
        return ValueTask.FromResult(list);
    }

    public ValueTask<RemoteDomain> LookupDomainByIdAsync(int id, CancellationToken cancellationToken) => Call(() => Ref(_host.LookupById(id)));

    public ValueTask<RemoteDomain> LookupDomainByNameAsync(string name, CancellationToken cancellationToken) => Call(() => Ref(_host.LookupByName(name)));

    public ValueTask<RemoteDomain> LookupDomainByUuidAsync(Guid uuid, CancellationToken cancellationToken) => Call(() => Ref(_host.LookupByUuid(uuid)));

    public ValueTask<RemoteDomain> DefineDomainAsync(string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        // VIR_DOMAIN_DEFINE_VALIDATE: the engine validates every definition anyway.
        CheckFlags(flags, 1, "qemuDomainDefineXMLFlags");
        var existed = TryParseName(xml) is { } name && _host.ListDomains().Any(d => d.Name == name);
        var definition = RunningDomainXml.WithoutRunState(DomainParser.Parse(xml, cancellationToken: cancellationToken));
        var domain = await _host.DefineAsync(definition, cancellationToken).ConfigureAwait(false);
        Events?.PublishLifecycle(Ref(domain), DomainLifecycleEvent.Defined, existed ? 1 : 0);
        return Ref(domain);
    });

    public ValueTask UndefineDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        await _host.UndefineAsync(found, (DomainUndefineFlags)flags, cancellationToken).ConfigureAwait(false);
        _autostart.Set(found.Name, false);
        Events?.PublishLifecycle(Ref(found), DomainLifecycleEvent.Undefined, 0);
    });

    /// <summary>A disk that joins the running domain is announced by its alias (DEVICE_ADDED), as qemuDomainAttachDeviceLive does.</summary>
    public ValueTask AttachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        if (await found.AttachDeviceAsync(xml, (DeviceModifyFlags)flags, cancellationToken).ConfigureAwait(false) is { } alias)
        {
            Events?.PublishDevice(Ref(found), alias, added: true);
        }
    });

    /// <summary>qemuDomainBlockResize: the size in KiB unless VIR_DOMAIN_BLOCK_RESIZE_BYTES (1).</summary>
    public ValueTask ResizeBlockAsync(RemoteDomain domain, string disk, ulong size, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        CheckFlags(flags, 1, "qemuDomainBlockResize");
        if ((flags & 1) == 0)
        {
            if (size > ulong.MaxValue / 1024)
            {
                throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"size must be less than {ulong.MaxValue / 1024} KiB");
            }

            size *= 1024;
        }

        if (size > long.MaxValue)
        {
            throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"size {size} is too large");
        }

        await Find(domain).ResizeDiskAsync(disk, (long)size, cancellationToken).ConfigureAwait(false);
    });

    /// <summary>A disk that leaves the running domain is announced by its alias (DEVICE_REMOVED), as qemuDomainRemoveDiskDevice does.</summary>
    public ValueTask DetachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        if (await found.DetachDeviceAsync(xml, (DeviceModifyFlags)flags, cancellationToken).ConfigureAwait(false) is { } alias)
        {
            Events?.PublishDevice(Ref(found), alias, added: false);
        }
    });

    /// <summary>A drive whose media changed announces its tray opening and closing (TRAY_CHANGE), as QEMU's events reach libvirt's clients.</summary>
    public ValueTask UpdateDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        await found.UpdateDeviceAsync(xml, (DeviceModifyFlags)flags, alias =>
        {
            Events?.PublishTrayChange(Ref(found), alias, TrayChangeReason.Opened);
            Events?.PublishTrayChange(Ref(found), alias, TrayChangeReason.Closed);
        }, cancellationToken).ConfigureAwait(false);
    });

    public ValueTask DetachDeviceAliasAsync(RemoteDomain domain, string alias, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        if (await found.DetachDeviceAliasAsync(alias, (DeviceModifyFlags)flags, cancellationToken).ConfigureAwait(false) is { } removed)
        {
            Events?.PublishDevice(Ref(found), removed, added: false);
        }
    });

    /// <summary>
    /// libvirt raises UNDEFINED (RENAMED) under the old name, then DEFINED (RENAMED) under the
    /// new one (qemuDomainRename); the autostart mark moves with the domain, as libvirt moves
    /// its autostart link.
    /// </summary>
    public ValueTask RenameDomainAsync(RemoteDomain domain, string? newName, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        if (newName is null)
        {
            throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Domain, "new_name in virDomainRename must not be NULL");
        }

        CheckFlags(flags, 0, "qemuDomainRename");
        var found = Find(domain);
        var before = Ref(found);
        await _host.RenameAsync(found, newName, cancellationToken).ConfigureAwait(false);
        if (_autostart.Get(before.Name))
        {
            _autostart.Set(newName, true);
            _autostart.Set(before.Name, false);
        }

        Events?.PublishLifecycle(before, DomainLifecycleEvent.Undefined, UndefinedRenamed);
        Events?.PublishLifecycle(Ref(found), DomainLifecycleEvent.Defined, DefinedRenamed);
    });

    public ValueTask<RemoteDomain> StartDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        CheckFlags(flags, DomainCreateFlags.Paused | DomainCreateFlags.GuestTcp, "qemuDomainCreateWithFlags");
        var found = Find(domain);
        var start = EngineStartFlags(flags);
        await found.StartAsync(start, cancellationToken).ConfigureAwait(false);
        Started(found, start);
        return Ref(found);
    });

    public ValueTask<RemoteDomain> CreateDomainAsync(string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        // VIR_DOMAIN_START_VALIDATE (0x10): the engine validates every definition anyway.
        // AUTODESTROY, BYPASS_CACHE and FORCE_BOOT have nothing to act on here, as with start.
        CheckFlags(flags, DomainCreateFlags.Paused | DomainCreateFlags.GuestTcp | 0x10, "qemuDomainCreateXML");
        var definition = RunningDomainXml.WithoutRunState(DomainParser.Parse(xml, cancellationToken: cancellationToken));
        var start = EngineStartFlags(flags);
        var created = await _host.CreateAsync(definition, start, cancellationToken).ConfigureAwait(false);
        Started(created, start);
        return Ref(created);
    });

    public ValueTask DestroyDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        // VIR_DOMAIN_DESTROY_GRACEFUL: every stop is graceful here (images flushed and closed).
        CheckFlags(flags, 1, "qemuDomainDestroyFlags");
        var found = Find(domain);
        var reference = Ref(found);
        await found.DestroyAsync(cancellationToken).ConfigureAwait(false);
        _shutoffReasons[found.Uuid] = ShutoffDestroyed;

        // libvirt's destroy sends QEMU SIGTERM first (qemuProcessKill), QEMU reports a SHUTDOWN
        // it did not get from the guest, and qemuProcessHandleShutdown emits SHUTDOWN with
        // detail HOST; then qemuProcessStop emits STOPPED with detail DESTROYED.
        Events?.PublishLifecycle(reference, DomainLifecycleEvent.Shutdown, ShutdownHost);
        Events?.PublishLifecycle(reference, DomainLifecycleEvent.Stopped, StoppedDestroyed);
    });

    public ValueTask ShutdownDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        var reference = Ref(found);
        await found.ShutdownAsync(cancellationToken).ConfigureAwait(false);
        _shutoffReasons[found.Uuid] = ShutoffShutdown;
        Events?.PublishLifecycle(reference, DomainLifecycleEvent.Stopped, 0);
    });

    public ValueTask SuspendDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        // qemuDomainSuspend: the event comes from QEMU's STOP, so a domain already paused gets none.
        var found = Find(domain);
        if (await found.SuspendAsync(cancellationToken).ConfigureAwait(false))
        {
            Events?.PublishLifecycle(Ref(found), DomainLifecycleEvent.Suspended, SuspendedPaused);
        }
    });

    public ValueTask ResumeDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        // qemuDomainResume: the domain then runs as UNPAUSED; the event comes from QEMU's RESUME.
        var found = Find(domain);
        await found.ResumeAsync(cancellationToken).ConfigureAwait(false);
        Events?.PublishLifecycle(Ref(found), DomainLifecycleEvent.Resumed, ResumedUnpaused);
    });

    public ValueTask<DomainStateInfo> GetDomainStateAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, 0, "qemuDomainGetState");

        return StateOf(Find(domain));
    });

    public ValueTask<string> GetOsTypeAsync(RemoteDomain domain, CancellationToken cancellationToken) =>
        Call(() => Find(domain).Definition.Element.Element("os")?.Element("type")?.Value.Trim() ?? "hvm");

    public ValueTask<bool> HasManagedSaveImageAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, 0, "qemuDomainHasManagedSaveImage");
        Find(domain);

        // Tidemark never saves a guest's memory, so there is never an image to restore from.
        return false;
    });

    public ValueTask<DomainInfo> GetDomainInfoAsync(RemoteDomain domain, CancellationToken cancellationToken) => Call(() =>
    {
        var found = Find(domain);
        var element = found.Definition.Element;
        var memory = KiB(element.Element("memory")) ?? 0;
        var current = KiB(element.Element("currentMemory")) ?? memory;
        var vcpus = ushort.TryParse(element.Element("vcpu")?.Value, CultureInfo.InvariantCulture, out var n) ? n : (ushort)1;
        return new DomainInfo(WireStateOf(found.State), memory, current, vcpus, 0);
    });

    public ValueTask<bool> IsDomainActiveAsync(RemoteDomain domain, CancellationToken cancellationToken) => Call(() => Find(domain).IsActive);

    public ValueTask<bool> IsDomainPersistentAsync(RemoteDomain domain, CancellationToken cancellationToken) => Call(() => Find(domain).IsPersistent);

    public ValueTask<string> GetDomainXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        // SECURE, INACTIVE, UPDATE_CPU, MIGRATABLE: SECURE adds the secure data, and so does
        // MIGRATABLE on libvirtd 9.0 (a migration takes the VNC password along); otherwise
        // UPDATE_CPU and MIGRATABLE change nothing Tidemark keeps.
        CheckFlags(flags, 1 | 2 | 4 | 8, "qemuDomainGetXMLDesc");
        var found = Find(domain);
        var format = (flags & (1 | 8)) != 0 ? DomainFormatFlags.Secure : DomainFormatFlags.None;
        return (flags & 2) != 0 || found.Running is not { } running
            ? found.GetXml(format)
            : RunningDomainXml.Format(found.Definition, running, found.Id, found.DiskNodeIndexes, format);
    });

    public ValueTask<bool> GetAutostartAsync(RemoteDomain domain, CancellationToken cancellationToken) => Call(() => _autostart.Get(Find(domain).Name));

    public ValueTask SetAutostartAsync(RemoteDomain domain, bool autostart, CancellationToken cancellationToken) => CallAsync(() =>
    {
        var found = Find(domain);
        if (!found.IsPersistent)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Qemu, "cannot set autostart for transient domain");
        }

        _autostart.Set(found.Name, autostart);
        return Task.CompletedTask;
    });

    public ValueTask<BlockInfo> GetBlockInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        CheckFlags(flags, 0, "qemuDomainGetBlockInfo");
        var found = Find(domain);
        var disk = found.Definition.DiskByName(path)
            ?? throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"invalid path {path} not assigned to domain");
        if (disk.IsEmpty || disk.SourcePath is null)
        {
            throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"disk '{disk.TargetDev}' does not currently have a source assigned");
        }

        return await BlockInfoOfAsync(found, disk, disk.SourcePath, cancellationToken).ConfigureAwait(false);
    });

    // A guest request's I/O failed: libvirt's IO_ERROR and IO_ERROR_REASON events, then, when it
    // paused the domain, the lifecycle event (qemuProcessHandleIOError).
    private void OnGuestIoError(object? sender, GuestIoErrorEventArgs error)
    {
        var domain = error.Domain;
        var remote = Ref(domain);
        var action = error.Action switch
        {
            DiskErrorAction.Stop => IoErrorAction.Pause,
            DiskErrorAction.Ignore => IoErrorAction.None,
            _ => IoErrorAction.Report,
        };
        Events?.PublishIoError(remote, error.Source, DiskAliases.Of(domain.Definition, error.Target) ?? "", action, error.NoSpace ? "enospc" : "");
        if (error.PausedDomain)
        {
            Events?.PublishLifecycle(remote, DomainLifecycleEvent.Suspended, SuspendedIoError);
        }
    }

    // Reasons: RUNNING_BOOTED, or RUNNING_UNPAUSED once resumed; PAUSED_IOERROR when a guest
    // request's failure paused it, else PAUSED_USER; SHUTOFF_* as the domain last stopped.
    private DomainStateInfo StateOf(EngineDomain found) => found.State switch
    {
        EngineState.Running => new DomainStateInfo(WireState.Running, found.WasResumed ? RunningUnpaused : RunningBooted),
        EngineState.Paused => new DomainStateInfo(WireState.Paused, found.PausedByIoError ? PausedIoError : PausedUser),
        _ => new DomainStateInfo(WireState.Shutoff, _shutoffReasons.GetValueOrDefault(found.Uuid, found.EndedByHostCrash ? ShutoffCrashed : found.EndedAtReconnect ? ShutoffDaemon : ShutoffUnknown)),
    };

    /// <summary>
    /// A disk's allocation, capacity and physical size, as virDomainGetBlockInfo reports them
    /// (qemuDomainGetBlockInfo): a file's allocation is what the file system holds for it
    /// (st_blocks * 512, QEMU's actual-size) and its physical size its length; a running raw
    /// disk or block device reports the highest byte written since the start instead (QEMU's
    /// wr_highest_offset, what a thin volume under the image is extended by), while it is not 0.
    /// </summary>
    private static async Task<BlockInfo> BlockInfoOfAsync(EngineDomain found, DomainDisk disk, string sourcePath, CancellationToken cancellationToken)
    {
        long fileLength, held;
        try
        {
            (fileLength, held) = DiskImage.Sizes(sourcePath);
        }
        catch (Exception e) when (HostErrno.Of(e) is not null)
        {
            // qemuDomainStorageOpenStat's system error (an image gone, or not readable).
            throw LibvirtError.Create(VirErrorNumber.SystemError, VirErrorDomain.Qemu, $"Failed to open file '{sourcePath}': {HostErrno.Describe(e)}");
        }

        var length = (ulong)fileLength;
        var actual = disk.Type == DiskSourceType.Block ? 0 : (ulong)held;
        if (found.Running?.DiskByTarget(disk.TargetDev) is { } runningDisk)
        {
            var allocation = runningDisk.Format == ImageFormat.Qcow2 && disk.Type != DiskSourceType.Block ? actual : HighestWrite(runningDisk);
            if (actual == 0 || allocation == 0 || allocation == actual)
            {
                return new BlockInfo(allocation == 0 ? actual : allocation, (ulong)runningDisk.LiveImage.VirtualSize, length);
            }

            return new BlockInfo(allocation, (ulong)runningDisk.LiveImage.VirtualSize, actual);
        }

        // The image's own header, as qemuStorageLimitsRefresh reads it: its backing files are
        // not opened (one may be missing), and a disk naming no format is raw, never probed. A
        // block device holds its whole length.
        var fileAllocation = disk.Type == DiskSourceType.Block ? length : actual;
        var format = disk.DriverType is { } type ? ImageFormatNames.Parse(type) : ImageFormat.Raw;
        if (format == ImageFormat.Raw)
        {
            // A raw file's capacity is its length to the byte (QEMU, once running, rounds it
            // up to a 512-byte sector).
            return new BlockInfo(fileAllocation, length, length);
        }

        var image = await DiskImage.OpenWithoutBackingAsync(sourcePath, format, cancellationToken).ConfigureAwait(false);
        await using (image.ConfigureAwait(false))
        {
            return new BlockInfo(fileAllocation, (ulong)image.VirtualSize, length);
        }
    }

    /// <summary>QEMU's wr_highest_offset of a running disk's top file: the end of the highest write since the start.</summary>
    private static ulong HighestWrite(Tidemark.Engine.Disks.RunningDisk disk) => (ulong)(disk.LiveImage switch
    {
        Qcow2Image qcow2 => qcow2.HostWriteHighWater,
        RawImage raw => raw.HostWriteHighWater,
        _ => 0,
    });

    public ValueTask<IReadOnlyList<TypedParameter>> GetGuestInfoAsync(RemoteDomain domain, uint types, uint flags, CancellationToken cancellationToken) => Call<IReadOnlyList<TypedParameter>>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainGetGuestInfo");
        throw NoGuestAgent(domain);
    });

    public ValueTask<int> FreezeFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) => Call<int>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainFSFreeze");
        throw NoGuestAgent(domain);
    });

    public ValueTask<int> ThawFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) => Call<int>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainFSThaw");
        throw NoGuestAgent(domain);
    });

    public ValueTask<IReadOnlyList<GuestFileSystem>> GetFileSystemsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call<IReadOnlyList<GuestFileSystem>>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainGetFSInfo");
        throw NoGuestAgent(domain);
    });

    public ValueTask<string> GetHostnameAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call<string>(() =>
    {
        CheckFlags(flags, HostnameFromLease | HostnameFromAgent, "qemuDomainGetHostname");
        if (flags == (HostnameFromLease | HostnameFromAgent))
        {
            throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, "Flags 'VIR_DOMAIN_GET_HOSTNAME_LEASE' and 'VIR_DOMAIN_GET_HOSTNAME_AGENT' are mutually exclusive");
        }

        if (flags == HostnameFromLease)
        {
            // Tidemark's guests have no network, so no DHCP lease names them.
            var found = Find(domain);
            throw found.IsActive
                ? LibvirtError.Create(VirErrorNumber.NoHostname, VirErrorDomain.Qemu, $"no hostname found for domain {found.Name}")
                : NotRunning();
        }

        throw NoGuestAgent(domain);
    });

    public ValueTask<GuestTime> GetTimeAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call<GuestTime>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainGetTime");
        throw NoGuestAgent(domain);
    });

    public ValueTask<string?> QemuAgentCommandAsync(RemoteDomain domain, string command, int timeout, uint flags, CancellationToken cancellationToken) => Call<string?>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainQemuAgentCommand");
        throw NoGuestAgent(domain);
    });

    public ValueTask<RemoteStoragePool> LookupStoragePoolByTargetPathAsync(string path, CancellationToken cancellationToken) =>
        throw LibvirtError.Create(VirErrorNumber.NoStoragePool, VirErrorDomain.Storage, $"no storage pool with matching target path '{path}'");

    /// <summary>Starts the domains marked autostart, as libvirtd does when it starts; a failure is logged and the others still start.</summary>
    public async Task AutostartAsync(CancellationToken cancellationToken)
    {
        foreach (var domain in _host.ListDomains().Where(d => !d.IsActive && _autostart.Get(d.Name)))
        {
            try
            {
                await domain.StartAsync(StartFlags, cancellationToken).ConfigureAwait(false);
                _logger.LogInformation("autostarted domain {Domain}", domain.Name);
            }
            catch (Exception e) when (WireErrors.From(e) is not null)
            {
                _logger.LogError("cannot autostart domain {Domain}: {Error}", domain.Name, e.Message);
            }
        }
    }

    private static RemoteDomain Ref(EngineDomain domain) => new(domain.Name, domain.Uuid, domain.Id);

    // The daemon's own start flags (--guest-tcp) and those the caller's libvirt flags ask for.
    private DomainStartFlags EngineStartFlags(uint flags) =>
        StartFlags
        | ((flags & DomainCreateFlags.GuestTcp) != 0 ? DomainStartFlags.GuestTcp : DomainStartFlags.None)
        | ((flags & DomainCreateFlags.Paused) != 0 ? DomainStartFlags.Paused : DomainStartFlags.None);

    /// <summary>
    /// A start's reasons and events, as libvirtd 9.0 with QEMU gives them. A domain started
    /// running: qemuProcessStart sends QEMU <c>cont</c>, whose RESUME event qemuProcessHandleResume
    /// turns into RESUMED (UNPAUSED) while the start is still under way; then qemuDomainObjStart
    /// (or qemuDomainCreateXML) sends STARTED (BOOTED). A domain started paused gets no
    /// <c>cont</c>: STARTED (BOOTED), then SUSPENDED (PAUSED) for the clients that follow the
    /// paused state, and its state reason is PAUSED_USER (qemuProcessFinishStartup).
    /// </summary>
    private void Started(EngineDomain domain, DomainStartFlags flags)
    {
        _shutoffReasons.TryRemove(domain.Uuid, out _);
        var reference = Ref(domain);
        var paused = flags.HasFlag(DomainStartFlags.Paused);
        if (!paused)
        {
            Events?.PublishLifecycle(reference, DomainLifecycleEvent.Resumed, ResumedUnpaused);
        }

        Events?.PublishLifecycle(reference, DomainLifecycleEvent.Started, StartedBooted);
        if (paused)
        {
            Events?.PublishLifecycle(reference, DomainLifecycleEvent.Suspended, SuspendedPaused);
        }
    }

    private EngineDomain Find(RemoteDomain domain)
    {
        var found = _host.ListDomains().FirstOrDefault(d => d.Uuid == domain.Uuid);
        return found ?? throw LibvirtError.NoDomainWithUuid(domain.Uuid, domain.Name);
    }

    private bool Matches(EngineDomain domain, uint flags)
    {
        var autostart = _autostart.Get(domain.Name);
        var properties =
            (domain.IsActive ? 1u : 2u)
            | (domain.IsPersistent ? 4u : 8u)
            | domain.State switch
            {
                EngineState.Running => 16u,
                EngineState.Paused => 32u,
                _ => 64u,
            }
            | 512u
            | (autostart ? 1024u : 2048u)
            | 8192u
            | (domain.Checkpoints.Count > 0 ? 16384u : 32768u);
        return ListFilterGroups.All(group => (flags & group) == 0 || (flags & group & properties) != 0);
    }

    private static WireState WireStateOf(EngineState state) => state switch
    {
        EngineState.Running => WireState.Running,
        EngineState.Paused => WireState.Paused,
        _ => WireState.Shutoff,
    };

    private static ulong? KiB(XElement? memory)
    {
        if (memory is null || !ulong.TryParse(memory.Value, CultureInfo.InvariantCulture, out var value))
        {
            return null;
        }

        return (string?)memory.Attribute("unit") switch
        {
            "b" or "bytes" => value / 1024,
            "M" or "MiB" => value * 1024,
            "G" or "GiB" => value * 1024 * 1024,
            _ => value,
        };
    }

    private static string? TryParseName(string xml)
    {
        try
        {
            return XElement.Parse(xml).Element("name")?.Value;
        }
        catch (System.Xml.XmlException)
        {
            return null;
        }
    }

    /// <summary>
    /// Why <paramref name="domain"/>'s guest agent cannot take a command, in the words of
    /// libvirt's qemuDomainAgentAvailable (after virDomainObjCheckActive): an agent answers only
    /// while the domain runs, so a paused one is "not running" too; a running one whose
    /// definition has no agent channel has none configured (virtnbdbackup and virsh go on
    /// without it); one with the channel has an agent that is not connected, since no agent
    /// runs in a Tidemark guest, as in a QEMU guest that never started one.
    /// </summary>
    private LibvirtError NoGuestAgent(RemoteDomain domain)
    {
        var found = Find(domain);
        if (found.State != EngineState.Running)
        {
            return NotRunning();
        }

        return DeclaresGuestAgent(found.Definition.Element)
            ? LibvirtError.Create(VirErrorNumber.AgentUnresponsive, VirErrorDomain.Qemu, "QEMU guest agent is not connected")
            : LibvirtError.Create(VirErrorNumber.ArgumentUnsupported, VirErrorDomain.Qemu, "QEMU guest agent is not configured");
    }

    // qemuFindAgentConfig: a virtio channel named org.qemu.guest_agent.0.
    private static bool DeclaresGuestAgent(XElement domain) =>
        domain.Element("devices")?.Elements("channel").Select(c => c.Element("target"))
            .Any(t => (string?)t?.Attribute("type") == "virtio" && (string?)t.Attribute("name") == "org.qemu.guest_agent.0") == true;

    private static void CheckFlags(uint flags, uint known, string function)
    {
        if ((flags & ~known) != 0)
        {
            throw Unsupported(flags & ~known, function);
        }
    }

    // virCheckFlags reports through virReportInvalidArg: INVALID_ARG without the code's prefix
    // (EngineErrorReasons.IsBare).
    private static LibvirtError Unsupported(uint flags, string function) =>
        new(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"unsupported flags (0x{flags:x}) in function {function}");

    private static ValueTask<T> Call<T>(Func<T> call)
    {
        try
        {
            return ValueTask.FromResult(call());
        }
        catch (Exception e) when (WireErrors.From(e) is { } error && error != e)
        {
            throw error;
        }
    }

    private static ValueTask Call(Action call)
    {
        try
        {
            call();
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (WireErrors.From(e) is { } error && error != e)
        {
            throw error;
        }
    }

    private static async ValueTask<T> CallAsync<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception e) when (WireErrors.From(e) is { } error && error != e)
        {
            throw error;
        }
    }

    private static async ValueTask CallAsync(Func<Task> call)
    {
        try
        {
            await call().ConfigureAwait(false);
        }
        catch (Exception e) when (WireErrors.From(e) is { } error && error != e)
        {
            throw error;
        }
    }
}
