using Microsoft.Win32.SafeHandles;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Server;

namespace Tidemark.Fuzz;

/// <summary>
/// The backend behind the remote protocol harness: one running domain "vm" with checkpoints
/// c1 and c2, answered from memory; every procedure that would change or start something is
/// refused with libvirt's "not supported", so the harness exercises the decoding and dispatch,
/// not an engine.
/// </summary>
internal sealed class FuzzHypervisor : IRemoteHypervisor
{
    private static readonly RemoteDomain Domain = new("vm", new Guid("6f1e3c9a-6a8e-4c0b-9d0e-2f1a7b3c5d4e"), 1);

    private static readonly IReadOnlyList<RemoteCheckpoint> Checkpoints = [new("c1", Domain), new("c2", Domain)];

    private const string DomainXml = "<domain type='kvm'><name>vm</name><uuid>6f1e3c9a-6a8e-4c0b-9d0e-2f1a7b3c5d4e</uuid><memory unit='KiB'>1048576</memory><os><type>hvm</type></os></domain>";

    public ValueTask OpenAsync(string? name, uint flags, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask<string> GetTypeAsync(CancellationToken cancellationToken) => new("QEMU");

    public ValueTask<ulong> GetVersionAsync(CancellationToken cancellationToken) => new(9_002_000UL);

    public ValueTask<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken) => new(9_002_000UL);

    public ValueTask<string> GetHostnameAsync(CancellationToken cancellationToken) => new("fuzz");

    public ValueTask<string> GetUriAsync(CancellationToken cancellationToken) => new("qemu:///system");

    public void ConnectionClosed(object connection)
    {
    }

    public ValueTask AssociateFdsAsync(RemoteDomain domain, string name, IReadOnlyList<SafeFileHandle> fds, uint flags, object connection, CancellationToken cancellationToken)
    {
        foreach (var fd in fds)
        {
            fd.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<IReadOnlyList<RemoteDomain>> ListAllDomainsAsync(uint flags, CancellationToken cancellationToken) => new([Domain]);

    public ValueTask<RemoteDomain> LookupDomainByIdAsync(int id, CancellationToken cancellationToken) => id == Domain.Id ? new(Domain) : throw LibvirtError.Create(VirErrorNumber.NoDomain, VirErrorDomain.Qemu, $"no domain with matching id {id}");

    public ValueTask<RemoteDomain> LookupDomainByNameAsync(string name, CancellationToken cancellationToken) => name == Domain.Name ? new(Domain) : throw LibvirtError.NoDomainWithName(name);

    public ValueTask<RemoteDomain> LookupDomainByUuidAsync(Guid uuid, CancellationToken cancellationToken) => uuid == Domain.Uuid ? new(Domain) : throw LibvirtError.NoDomainWithUuid(uuid);

    public ValueTask<RemoteDomain> DefineDomainAsync(string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(DefineDomainAsync));

    public ValueTask UndefineDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(UndefineDomainAsync));

    public ValueTask<RemoteDomain> StartDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(StartDomainAsync));

    public ValueTask AttachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(AttachDeviceAsync));

    public ValueTask DetachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(DetachDeviceAsync));

    public ValueTask DetachDeviceAliasAsync(RemoteDomain domain, string alias, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(DetachDeviceAliasAsync));

    public ValueTask UpdateDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(UpdateDeviceAsync));

    public ValueTask ResizeBlockAsync(RemoteDomain domain, string disk, ulong size, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(ResizeBlockAsync));

    public ValueTask RenameDomainAsync(RemoteDomain domain, string? newName, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(RenameDomainAsync));

    public ValueTask<NodeInfo> GetNodeInfoAsync(CancellationToken cancellationToken) => new(new NodeInfo("x86_64", 1024, 1, 1000, 1, 1, 1, 1));

    public ValueTask<BlockStats> GetBlockStatsAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => new(new BlockStats(1, 2, 3, 4, 5, 6, 7, 8));

    public ValueTask<IReadOnlyList<DiskError>> GetDiskErrorsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => new([new DiskError("vda", DiskErrorCode.NoSpace)]);

    public ValueTask<IReadOnlyList<DomainStatsRecord>> GetAllDomainStatsAsync(IReadOnlyList<RemoteDomain> domains, uint stats, uint flags, CancellationToken cancellationToken) => new([.. domains.Select(d => new DomainStatsRecord(d, [TypedParameter.Int("state.state", 1)]))]);

    public ValueTask<RemoteDomain> CreateDomainAsync(string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(CreateDomainAsync));

    public ValueTask DestroyDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(DestroyDomainAsync));

    public ValueTask ShutdownDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(ShutdownDomainAsync));

    public ValueTask SuspendDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(SuspendDomainAsync));

    public ValueTask ResumeDomainAsync(RemoteDomain domain, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(ResumeDomainAsync));

    public ValueTask<DomainStateInfo> GetDomainStateAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => new(new DomainStateInfo(DomainState.Running, 1));

    public ValueTask<DomainInfo> GetDomainInfoAsync(RemoteDomain domain, CancellationToken cancellationToken) => new(new DomainInfo(DomainState.Running, 1 << 20, 1 << 20, 2, 0));

    public ValueTask<bool> IsDomainActiveAsync(RemoteDomain domain, CancellationToken cancellationToken) => new(true);

    public ValueTask<bool> IsDomainPersistentAsync(RemoteDomain domain, CancellationToken cancellationToken) => new(true);

    public ValueTask<string> GetOsTypeAsync(RemoteDomain domain, CancellationToken cancellationToken) => new("hvm");

    public ValueTask<bool> HasManagedSaveImageAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => new(false);

    public ValueTask<string> GetDomainXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => new(DomainXml);

    public ValueTask<bool> GetAutostartAsync(RemoteDomain domain, CancellationToken cancellationToken) => new(false);

    public ValueTask SetAutostartAsync(RemoteDomain domain, bool autostart, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(SetAutostartAsync));

    public ValueTask<BlockInfo> GetBlockInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetBlockInfoAsync));

    public ValueTask<IReadOnlyList<TypedParameter>> GetGuestInfoAsync(RemoteDomain domain, uint types, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetGuestInfoAsync));

    public ValueTask<int> FreezeFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(FreezeFilesystemsAsync));

    public ValueTask<int> ThawFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(ThawFilesystemsAsync));

    public ValueTask<IReadOnlyList<GuestFileSystem>> GetFileSystemsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetFileSystemsAsync));

    public ValueTask<string> GetHostnameAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetHostnameAsync));

    public ValueTask<GuestTime> GetTimeAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetTimeAsync));

    public ValueTask<string?> QemuAgentCommandAsync(RemoteDomain domain, string command, int timeout, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(QemuAgentCommandAsync));

    public ValueTask<RemoteStoragePool> LookupStoragePoolByTargetPathAsync(string path, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(LookupStoragePoolByTargetPathAsync));

    public ValueTask<RemoteCheckpoint> CreateCheckpointAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(CreateCheckpointAsync));

    public ValueTask<string> GetCheckpointXmlAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => new($"<domaincheckpoint><name>{checkpoint.Name}</name></domaincheckpoint>");

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListAllCheckpointsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => new(Checkpoints);

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListCheckpointChildrenAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => new(checkpoint.Name == "c1" ? Checkpoints.Skip(1).ToList() : []);

    public ValueTask<RemoteCheckpoint> LookupCheckpointByNameAsync(RemoteDomain domain, string name, uint flags, CancellationToken cancellationToken) => Checkpoints.FirstOrDefault(c => c.Name == name) is { } c ? new(c) : throw LibvirtError.Create(VirErrorNumber.NoDomainCheckpoint, VirErrorDomain.DomainCheckpoint, $"no domain checkpoint with matching name '{name}'");

    public ValueTask<RemoteCheckpoint> GetCheckpointParentAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetCheckpointParentAsync));

    public ValueTask DeleteCheckpointAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(DeleteCheckpointAsync));

    public ValueTask BeginBackupAsync(RemoteDomain domain, string backupXml, string? checkpointXml, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(BeginBackupAsync));

    public ValueTask<string> GetBackupXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetBackupXmlAsync));

    public ValueTask<JobInfo> GetJobInfoAsync(RemoteDomain domain, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetJobInfoAsync));

    public ValueTask<JobStats> GetJobStatsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetJobStatsAsync));

    public ValueTask AbortJobAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(AbortJobAsync));

    public ValueTask<BlockJobInfo?> GetBlockJobInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => throw LibvirtError.NoSupport(nameof(GetBlockJobInfoAsync));
}
