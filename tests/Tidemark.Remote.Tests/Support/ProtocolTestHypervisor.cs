using System.Collections.Concurrent;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Server;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests.Support;

/// <summary>
/// A protocol test fixture, not the engine: a tiny in-memory hypervisor whose domains and
/// checkpoints are XML strings, enough for real clients (virsh, libvirt-python) to run their
/// commands against <see cref="RemoteServer"/> and for the tests to check what came through.
/// Errors are libvirt's, with its codes, domains and texts.
/// </summary>
internal sealed class ProtocolTestHypervisor : IRemoteHypervisor, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, TestDomain> _domains = new(StringComparer.Ordinal);
    private int _nextId = 1;

    internal sealed class TestDomain(string name, Guid uuid)
    {
        public string Name { get; } = name;

        public Guid Uuid { get; } = uuid;

        public int Id { get; set; } = RemoteDomain.InactiveId;

        public bool Autostart { get; set; }

        /// <summary>The vda image a pull backup serves (through qemu-nbd, standing in for the engine).</summary>
        public string DiskPath { get; set; } = $"/var/lib/tidemark/{name}-vda.qcow2";

        public List<TestCheckpoint> Checkpoints { get; } = [];

        public RemoteDomain Ref => new(Name, Uuid, Id);

        public string Xml => $"<domain type='kvm'>\n  <name>{Name}</name>\n  <uuid>{Uuid:D}</uuid>\n  <memory unit='KiB'>1048576</memory>\n  <vcpu placement='static'>2</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n  </os>\n  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{DiskPath}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n";
    }

    internal sealed record TestCheckpoint(string Name, string? Parent, long CreationTime);

    /// <summary>Backend calls in arrival order, e.g. "LookupDomainByName vm1".</summary>
    public ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>A call that blocks until released (for mid-call tests); null when none.</summary>
    public TaskCompletionSource? HoldHostname { get; set; }

    /// <summary>Set when a held call saw its cancellation.</summary>
    public TaskCompletionSource HeldCallCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TestDomain AddDomain(string name, bool running = false)
    {
        var domain = new TestDomain(name, Guid.NewGuid());
        if (running)
        {
            domain.Id = _nextId++;
        }

        _domains[name] = domain;
        return domain;
    }

    public void AddCheckpoint(string domain, string name, string? parent, long creationTime) =>
        _domains[domain].Checkpoints.Add(new TestCheckpoint(name, parent, creationTime));

    public TestDomain Domain(string name) => _domains[name];

    private TestDomain Find(RemoteDomain domain) =>
        _domains.Values.FirstOrDefault(d => d.Uuid == domain.Uuid) ?? throw LibvirtError.NoDomainWithUuid(domain.Uuid, domain.Name);

    private static TestCheckpoint FindCheckpoint(TestDomain domain, string name) =>
        domain.Checkpoints.FirstOrDefault(c => c.Name == name) ?? throw LibvirtError.NoCheckpointWithName(name);

    private void Log(string call) => Calls.Enqueue(call);

    public ValueTask OpenAsync(string? name, uint flags, CancellationToken cancellationToken)
    {
        Log($"Open {name}");
        return ValueTask.CompletedTask;
    }

    public ValueTask<string> GetTypeAsync(CancellationToken cancellationToken) => ValueTask.FromResult("QEMU");

    public ValueTask<ulong> GetVersionAsync(CancellationToken cancellationToken) => ValueTask.FromResult(7_002_000ul);

    public ValueTask<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken) => ValueTask.FromResult(9_000_000ul);

    public async ValueTask<string> GetHostnameAsync(CancellationToken cancellationToken)
    {
        if (HoldHostname is { } hold)
        {
            try
            {
                await hold.Task.WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                HeldCallCancelled.TrySetResult();
                throw;
            }
        }

        return "tidemark-test";
    }

    public ValueTask<string> GetUriAsync(CancellationToken cancellationToken) => ValueTask.FromResult("qemu:///system");

    /// <summary>The fd groups associated, by name: the descriptors and the connection that passed them.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, (IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> Fds, object Connection)> FdGroups { get; } = new();

    public void ConnectionClosed(object connection)
    {
        foreach (var (name, group) in FdGroups)
        {
            if (group.Connection == connection && FdGroups.TryRemove(name, out _))
            {
                foreach (var fd in group.Fds)
                {
                    fd.Dispose();
                }
            }
        }
    }

    public ValueTask AssociateFdsAsync(RemoteDomain domain, string name, IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> fds, uint flags, object connection, CancellationToken cancellationToken)
    {
        Log($"AssociateFds {name} {fds.Count} {flags}");
        FdGroups[name] = (fds, connection);
        return ValueTask.CompletedTask;
    }

    public ValueTask<IReadOnlyList<RemoteDomain>> ListAllDomainsAsync(uint flags, CancellationToken cancellationToken)
    {
        Log($"ListAllDomains {flags}");
        IReadOnlyList<RemoteDomain> list = _domains.Values.OrderBy(d => d.Id < 0).ThenBy(d => d.Id).ThenBy(d => d.Name, StringComparer.Ordinal).Select(d => d.Ref).ToList();
        return ValueTask.FromResult(list);
    }

    public ValueTask<RemoteDomain> LookupDomainByIdAsync(int id, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_domains.Values.FirstOrDefault(d => d.Id == id && id > 0)?.Ref ?? throw LibvirtError.NoDomainWithId(id));

    public ValueTask<RemoteDomain> LookupDomainByNameAsync(string name, CancellationToken cancellationToken)
    {
        Log($"LookupDomainByName {name}");
        return ValueTask.FromResult(_domains.TryGetValue(name, out var d) ? d.Ref : throw LibvirtError.NoDomainWithName(name));
    }

    public ValueTask<RemoteDomain> LookupDomainByUuidAsync(Guid uuid, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_domains.Values.FirstOrDefault(d => d.Uuid == uuid)?.Ref ?? throw LibvirtError.NoDomainWithUuid(uuid));

    public ValueTask<RemoteDomain> DefineDomainAsync(string xml, uint flags, CancellationToken cancellationToken) =>
        throw LibvirtError.NoSupport("virDomainDefineXMLFlags");

    public ValueTask UndefineDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        _domains.TryRemove(Find(domain).Name, out _);
        return ValueTask.CompletedTask;
    }

    public ValueTask<NodeInfo> GetNodeInfoAsync(CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virNodeGetInfo");

    public ValueTask<BlockStats> GetBlockStatsAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainBlockStatsFlags");

    public ValueTask<IReadOnlyList<DiskError>> GetDiskErrorsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainGetDiskErrors");

    public ValueTask<IReadOnlyList<DomainStatsRecord>> GetAllDomainStatsAsync(IReadOnlyList<RemoteDomain> domains, uint stats, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virConnectGetAllDomainStats");

    public ValueTask AttachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainAttachDeviceFlags");

    public ValueTask DetachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainDetachDeviceFlags");

    public ValueTask DetachDeviceAliasAsync(RemoteDomain domain, string alias, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainDetachDeviceAlias");

    public ValueTask UpdateDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainUpdateDeviceFlags");

    public ValueTask ResizeBlockAsync(RemoteDomain domain, string disk, ulong size, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainBlockResize");

    public ValueTask RenameDomainAsync(RemoteDomain domain, string? newName, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainRename");

    public ValueTask<RemoteDomain> CreateDomainAsync(string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainCreateXML");

    public ValueTask<RemoteDomain> StartDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        if (d.Id > 0)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Qemu, "domain is already running");
        }

        d.Id = _nextId++;
        return ValueTask.FromResult(d.Ref);
    }

    public ValueTask DestroyDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        if (d.Id < 0)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Qemu, "domain is not running");
        }

        d.Id = RemoteDomain.InactiveId;
        return ValueTask.CompletedTask;
    }

    public ValueTask ShutdownDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => DestroyDomainAsync(domain, flags, cancellationToken);

    public ValueTask SuspendDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainSuspend");

    public ValueTask ResumeDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => throw LibvirtError.NoSupport("virDomainResume");

    public ValueTask<DomainStateInfo> GetDomainStateAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        return ValueTask.FromResult(d.Id > 0 ? new DomainStateInfo(DomainState.Running, 1) : new DomainStateInfo(DomainState.Shutoff, 0));
    }

    public ValueTask<DomainInfo> GetDomainInfoAsync(RemoteDomain domain, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        return ValueTask.FromResult(new DomainInfo(d.Id > 0 ? DomainState.Running : DomainState.Shutoff, 1048576, 1048576, 2, 0));
    }

    public ValueTask<bool> IsDomainActiveAsync(RemoteDomain domain, CancellationToken cancellationToken) => ValueTask.FromResult(Find(domain).Id > 0);

    public ValueTask<string> GetOsTypeAsync(RemoteDomain domain, CancellationToken cancellationToken)
    {
        Find(domain);
        return ValueTask.FromResult("hvm");
    }

    public ValueTask<bool> HasManagedSaveImageAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        Find(domain);
        return ValueTask.FromResult(false);
    }

    public ValueTask<bool> IsDomainPersistentAsync(RemoteDomain domain, CancellationToken cancellationToken) => ValueTask.FromResult(Find(domain) is not null);

    public ValueTask<string> GetDomainXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => ValueTask.FromResult(Find(domain).Xml);

    public ValueTask<bool> GetAutostartAsync(RemoteDomain domain, CancellationToken cancellationToken) => ValueTask.FromResult(Find(domain).Autostart);

    public ValueTask SetAutostartAsync(RemoteDomain domain, bool autostart, CancellationToken cancellationToken)
    {
        Find(domain).Autostart = autostart;
        return ValueTask.CompletedTask;
    }

    public ValueTask<BlockInfo> GetBlockInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new BlockInfo(65536, 1 << 30, 200704));

    public ValueTask<IReadOnlyList<TypedParameter>> GetGuestInfoAsync(RemoteDomain domain, uint types, uint flags, CancellationToken cancellationToken) =>
        throw LibvirtError.Create(VirErrorNumber.ArgumentUnsupported, VirErrorDomain.Qemu, "QEMU guest agent is not configured");

    public ValueTask<int> FreezeFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult(mountpoints.Count);

    public ValueTask<int> ThawFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult(mountpoints.Count);

    /// <summary>Two file systems, the second over both disks: every field of the answer's XDR in use.</summary>
    public ValueTask<IReadOnlyList<GuestFileSystem>> GetFileSystemsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlyList<GuestFileSystem>>([new GuestFileSystem("/", "vda1", "ext4", ["vda"]), new GuestFileSystem("/srv", "md0", "xfs", ["vda", "vdb"])]);

    public ValueTask<string> GetHostnameAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult("guest-" + domain.Name);

    public ValueTask<GuestTime> GetTimeAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new GuestTime(1_764_806_400, 123_456_789));

    /// <summary>An agent that answers guest-ping with an empty return and anything else with nothing.</summary>
    public ValueTask<string?> QemuAgentCommandAsync(RemoteDomain domain, string command, int timeout, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult(command.Contains("guest-ping", StringComparison.Ordinal) ? """{"return":{}}""" : null);

    public ValueTask<RemoteStoragePool> LookupStoragePoolByTargetPathAsync(string path, CancellationToken cancellationToken) =>
        throw LibvirtError.Create(VirErrorNumber.NoStoragePool, VirErrorDomain.Storage, $"no storage pool with matching target path '{path}'");

    public ValueTask<RemoteCheckpoint> CreateCheckpointAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        var start = xml.IndexOf("<name>", StringComparison.Ordinal);
        var name = start < 0 ? DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture) : xml[(start + 6)..xml.IndexOf("</name>", StringComparison.Ordinal)];
        lock (d.Checkpoints)
        {
            d.Checkpoints.Add(new TestCheckpoint(name, d.Checkpoints.LastOrDefault()?.Name, 1_700_000_000));
        }

        return ValueTask.FromResult(new RemoteCheckpoint(name, d.Ref));
    }

    public ValueTask<string> GetCheckpointXmlAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(checkpoint.Domain);
        var c = FindCheckpoint(d, checkpoint.Name);
        var parent = c.Parent is null ? "" : $"  <parent>\n    <name>{c.Parent}</name>\n  </parent>\n";
        return ValueTask.FromResult($"<domaincheckpoint>\n  <name>{c.Name}</name>\n{parent}  <creationTime>{c.CreationTime}</creationTime>\n  <disks>\n    <disk name='vda' checkpoint='bitmap' bitmap='{c.Name}'/>\n  </disks>\n</domaincheckpoint>\n");
    }

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListAllCheckpointsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        IReadOnlyList<RemoteCheckpoint> list;
        lock (d.Checkpoints)
        {
            list = d.Checkpoints.Select(c => new RemoteCheckpoint(c.Name, d.Ref)).ToList();
        }

        return ValueTask.FromResult(list);
    }

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListCheckpointChildrenAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(checkpoint.Domain);
        FindCheckpoint(d, checkpoint.Name);
        IReadOnlyList<RemoteCheckpoint> list = d.Checkpoints.Where(c => c.Parent == checkpoint.Name).Select(c => new RemoteCheckpoint(c.Name, d.Ref)).ToList();
        return ValueTask.FromResult(list);
    }

    public ValueTask<RemoteCheckpoint> LookupCheckpointByNameAsync(RemoteDomain domain, string name, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        return ValueTask.FromResult(new RemoteCheckpoint(FindCheckpoint(d, name).Name, d.Ref));
    }

    public ValueTask<RemoteCheckpoint> GetCheckpointParentAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(checkpoint.Domain);
        var c = FindCheckpoint(d, checkpoint.Name);
        return c.Parent is null
            ? throw LibvirtError.Create(VirErrorNumber.NoDomainCheckpoint, VirErrorDomain.Qemu, $"checkpoint '{c.Name}' does not have a parent")
            : ValueTask.FromResult(new RemoteCheckpoint(c.Parent, d.Ref));
    }

    public ValueTask DeleteCheckpointAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(checkpoint.Domain);
        var c = FindCheckpoint(d, checkpoint.Name);
        lock (d.Checkpoints)
        {
            d.Checkpoints.Remove(c);
            for (var i = 0; i < d.Checkpoints.Count; i++)
            {
                if (d.Checkpoints[i].Parent == c.Name)
                {
                    d.Checkpoints[i] = d.Checkpoints[i] with { Parent = c.Parent };
                }
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Records the call; a checkpoint document creates the checkpoint, and a pull backup's
    /// socket gets a read-only qemu-nbd export of vda (the data path is not this fixture's
    /// business, only that a real client can run its whole call sequence).
    /// </summary>
    public async ValueTask BeginBackupAsync(RemoteDomain domain, string backupXml, string? checkpointXml, uint flags, CancellationToken cancellationToken)
    {
        var d = Find(domain);
        Log($"BeginBackup {d.Name} {backupXml} {checkpointXml ?? "-"}");
        if (checkpointXml is not null)
        {
            await CreateCheckpointAsync(domain, checkpointXml, 0, cancellationToken);
        }

        var socket = System.Text.RegularExpressions.Regex.Match(backupXml, "socket=[\"']([^\"']+)[\"']");
        if (backupXml.Contains("mode=\"pull\"", StringComparison.Ordinal) && socket.Success)
        {
            _pullExport = await QemuNbdExport.StartAsync(d.DiskPath, socket.Groups[1].Value);
        }
    }

    private QemuNbdExport? _pullExport;

    public ValueTask<string> GetBackupXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) =>
        throw LibvirtError.Create(VirErrorNumber.NoDomainBackup, VirErrorDomain.Qemu, "no domain backup job present");

    public ValueTask<JobInfo> GetJobInfoAsync(RemoteDomain domain, CancellationToken cancellationToken) => ValueTask.FromResult(JobInfo.None);

    public ValueTask<JobStats> GetJobStatsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        Find(domain);
        return ValueTask.FromResult((flags & 1) != 0
            ? new JobStats(DomainJobType.Completed, CompletedBackupStats)
            : JobStats.None);
    }

    /// <summary>What a finished push backup reports (§5), string included.</summary>
    public static IReadOnlyList<TypedParameter> CompletedBackupStats { get; } =
    [
        TypedParameter.Int("operation", 9),
        TypedParameter.ULLong("time_elapsed", 1234),
        TypedParameter.ULLong("disk_total", 1 << 30),
        TypedParameter.ULLong("disk_processed", 1 << 30),
        TypedParameter.ULLong("disk_remaining", 0),
        TypedParameter.Boolean("success", true),
        TypedParameter.String("errmsg", "none"),
    ];

    public async ValueTask AbortJobAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken)
    {
        Log($"AbortJob {Find(domain).Name}");
        if (_pullExport is null)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Qemu, "no job is active on the domain");
        }

        await _pullExport.DisposeAsync();
        _pullExport = null;
    }

    public async ValueTask DisposeAsync()
    {
        if (_pullExport is not null)
        {
            await _pullExport.DisposeAsync();
        }
    }

    public ValueTask<BlockJobInfo?> GetBlockJobInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) =>
        ValueTask.FromResult<BlockJobInfo?>(path == "vdb" ? new BlockJobInfo(BlockJobType.Backup, 0, 10, 100) : null);
}
