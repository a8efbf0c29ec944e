using Microsoft.Win32.SafeHandles;
using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Server;

/// <summary>
/// What a <see cref="RemoteServer"/> serves: the hypervisor behind the libvirt API, in
/// libvirt's own terms. Each method is one procedure of libvirt-rpc.md §5 and takes and
/// returns wire-level records (a domain is name + uuid + id, documents are XML strings, flags
/// are the API's unsigned flags, unchecked here: the backend refuses bits it does not know, as
/// libvirt's drivers do with virCheckFlags). A failure is a <see cref="LibvirtError"/>, sent to
/// the client as it is; a method a backend cannot offer throws
/// <see cref="LibvirtError.NoSupport"/>.
/// </summary>
public interface IRemoteHypervisor : IConnectionProcedures, IDomainProcedures, ICheckpointProcedures, IBackupJobProcedures, IStatisticsProcedures
{
}

/// <summary>Statistics of running domains and their disks.</summary>
public interface IStatisticsProcedures
{
    /// <summary>
    /// DOMAIN_BLOCK_STATS (flags 0) and DOMAIN_BLOCK_STATS_FLAGS (flag 4 TYPED_PARAM_STRING_OKAY):
    /// the counters of the disk named by target dev or source path, or of every disk together
    /// when <paramref name="path"/> is empty.
    /// </summary>
    ValueTask<BlockStats> GetBlockStatsAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_DISK_ERRORS: every disk whose last request failed, with why.</summary>
    ValueTask<IReadOnlyList<DiskError>> GetDiskErrorsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// CONNECT_GET_ALL_DOMAIN_STATS: a stats record (groups <paramref name="stats"/>,
    /// virDomainStatsTypes) of each domain in <paramref name="domains"/>, or of every domain
    /// the filter bits of <paramref name="flags"/> select when the list is empty.
    /// </summary>
    ValueTask<IReadOnlyList<DomainStatsRecord>> GetAllDomainStatsAsync(IReadOnlyList<RemoteDomain> domains, uint stats, uint flags, CancellationToken cancellationToken);
}

/// <summary>The connection-level procedures (CONNECT_*).</summary>
public interface IConnectionProcedures
{
    /// <summary>CONNECT_OPEN: <paramref name="name"/> is the URI the client opened, e.g. "qemu:///system" (or null).</summary>
    ValueTask OpenAsync(string? name, uint flags, CancellationToken cancellationToken);

    /// <summary>CONNECT_GET_TYPE: the driver name, "QEMU" for a qemu:// URI.</summary>
    ValueTask<string> GetTypeAsync(CancellationToken cancellationToken);

    /// <summary>CONNECT_GET_VERSION: the hypervisor version, major * 1,000,000 + minor * 1,000 + micro.</summary>
    ValueTask<ulong> GetVersionAsync(CancellationToken cancellationToken);

    /// <summary>CONNECT_GET_LIB_VERSION: the libvirt version the server claims (virtnbdbackup skips a check at ≥ 7006000).</summary>
    ValueTask<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken);

    /// <summary>CONNECT_GET_HOSTNAME.</summary>
    ValueTask<string> GetHostnameAsync(CancellationToken cancellationToken);

    /// <summary>NODE_GET_INFO: the host's CPUs and memory (virsh nodeinfo).</summary>
    ValueTask<NodeInfo> GetNodeInfoAsync(CancellationToken cancellationToken);

    /// <summary>CONNECT_GET_URI: the canonical URI of the connection.</summary>
    ValueTask<string> GetUriAsync(CancellationToken cancellationToken);

    /// <summary>
    /// A client connection has ended (closed, dropped or refused): what it held goes (libvirt's
    /// close callbacks; here the fd groups it associated). <paramref name="connection"/> is the
    /// token it passed to the calls that took such things.
    /// </summary>
    void ConnectionClosed(object connection);
}

/// <summary>Domain lookup, definition, life cycle and queries.</summary>
public interface IDomainProcedures
{
    /// <summary>CONNECT_LIST_ALL_DOMAINS with virConnectListAllDomainsFlags (1 ACTIVE, 2 INACTIVE …).</summary>
    ValueTask<IReadOnlyList<RemoteDomain>> ListAllDomainsAsync(uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_LOOKUP_BY_ID; a missing one is NO_DOMAIN (42).</summary>
    ValueTask<RemoteDomain> LookupDomainByIdAsync(int id, CancellationToken cancellationToken);

    /// <summary>DOMAIN_LOOKUP_BY_NAME; a missing one is NO_DOMAIN (42).</summary>
    ValueTask<RemoteDomain> LookupDomainByNameAsync(string name, CancellationToken cancellationToken);

    /// <summary>DOMAIN_LOOKUP_BY_UUID; a missing one is NO_DOMAIN (42).</summary>
    ValueTask<RemoteDomain> LookupDomainByUuidAsync(Guid uuid, CancellationToken cancellationToken);

    /// <summary>DOMAIN_DEFINE_XML (flags 0) and DOMAIN_DEFINE_XML_FLAGS.</summary>
    ValueTask<RemoteDomain> DefineDomainAsync(string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// DOMAIN_FD_ASSOCIATE (443; flags 1 SECLABEL_RESTORE, 2 SECLABEL_WRITABLE): keeps the call's
    /// file descriptors under <paramref name="name"/> for <paramref name="connection"/>, until
    /// <see cref="IConnectionProcedures.ConnectionClosed"/>. The backend owns
    /// <paramref name="fds"/> from the call on, also when it throws.
    /// </summary>
    ValueTask AssociateFdsAsync(RemoteDomain domain, string name, IReadOnlyList<SafeFileHandle> fds, uint flags, object connection, CancellationToken cancellationToken);

    /// <summary>DOMAIN_UNDEFINE (flags 0) and DOMAIN_UNDEFINE_FLAGS (e.g. 32 CHECKPOINTS_METADATA).</summary>
    ValueTask UndefineDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// DOMAIN_RENAME (358): an inactive domain takes <paramref name="newName"/>, its checkpoints
    /// with it. libvirt's client refuses a NULL name before the call; one that arrives anyway is
    /// the backend's to refuse.
    /// </summary>
    ValueTask RenameDomainAsync(RemoteDomain domain, string? newName, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// DOMAIN_ATTACH_DEVICE_FLAGS (flags virDomainDeviceModifyFlags: 1 LIVE, 2 CONFIG) and
    /// DOMAIN_ATTACH_DEVICE, which is LIVE: adds the device in <paramref name="xml"/>.
    /// </summary>
    ValueTask AttachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_BLOCK_RESIZE: a running disk (target or source path) takes <paramref name="size"/>, in KiB unless flag 1 BYTES.</summary>
    ValueTask ResizeBlockAsync(RemoteDomain domain, string disk, ulong size, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_DETACH_DEVICE_FLAGS and DOMAIN_DETACH_DEVICE (LIVE): removes the device <paramref name="xml"/> names.</summary>
    ValueTask DetachDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// DOMAIN_UPDATE_DEVICE_FLAGS (174; flags 1 LIVE, 2 CONFIG, 4 FORCE): changes the device
    /// <paramref name="xml"/> names to what it describes (a drive's media, virsh change-media).
    /// </summary>
    ValueTask UpdateDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_DETACH_DEVICE_ALIAS (392): removes the device whose alias is <paramref name="alias"/> (flags as DETACH_DEVICE_FLAGS).</summary>
    ValueTask DetachDeviceAliasAsync(RemoteDomain domain, string alias, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CREATE (flags 0) and DOMAIN_CREATE_WITH_FLAGS: start; returns the domain with its new id.</summary>
    ValueTask<RemoteDomain> StartDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>
    /// DOMAIN_CREATE_XML (10): starts a domain from its XML without defining it (a transient
    /// domain, gone when it stops); returns it with its id.
    /// </summary>
    ValueTask<RemoteDomain> CreateDomainAsync(string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_DESTROY (flags 0) and DOMAIN_DESTROY_FLAGS.</summary>
    ValueTask DestroyDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_SHUTDOWN (flags 0) and DOMAIN_SHUTDOWN_FLAGS.</summary>
    ValueTask ShutdownDomainAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_SUSPEND.</summary>
    ValueTask SuspendDomainAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_RESUME.</summary>
    ValueTask ResumeDomainAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_STATE.</summary>
    ValueTask<DomainStateInfo> GetDomainStateAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_INFO.</summary>
    ValueTask<DomainInfo> GetDomainInfoAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_IS_ACTIVE.</summary>
    ValueTask<bool> IsDomainActiveAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_OS_TYPE: the domain's <c>os/type</c> (virsh dominfo's "OS Type").</summary>
    ValueTask<string> GetOsTypeAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_HAS_MANAGED_SAVE_IMAGE (virsh dominfo's "Managed save").</summary>
    ValueTask<bool> HasManagedSaveImageAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_IS_PERSISTENT.</summary>
    ValueTask<bool> IsDomainPersistentAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_XML_DESC with virDomainXMLFlags (1 SECURE, 2 INACTIVE, 4 UPDATE_CPU, 8 MIGRATABLE).</summary>
    ValueTask<string> GetDomainXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_AUTOSTART.</summary>
    ValueTask<bool> GetAutostartAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_SET_AUTOSTART.</summary>
    ValueTask SetAutostartAsync(RemoteDomain domain, bool autostart, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_BLOCK_INFO for a disk named by target dev or source path.</summary>
    ValueTask<BlockInfo> GetBlockInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_GUEST_INFO (needs a guest agent; virtnbdbackup tolerates an error).</summary>
    ValueTask<IReadOnlyList<TypedParameter>> GetGuestInfoAsync(RemoteDomain domain, uint types, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_FSFREEZE: the number of file systems frozen.</summary>
    ValueTask<int> FreezeFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_FSTHAW: the number of file systems thawed.</summary>
    ValueTask<int> ThawFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_FSINFO: the guest's mounted file systems, from its agent.</summary>
    ValueTask<IReadOnlyList<GuestFileSystem>> GetFileSystemsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_HOSTNAME: the guest's host name, from its agent (or its DHCP lease, by flag).</summary>
    ValueTask<string> GetHostnameAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_TIME: the guest's clock, from its agent.</summary>
    ValueTask<GuestTime> GetTimeAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>The QEMU program's DOMAIN_AGENT_COMMAND: a guest agent command's JSON answer.</summary>
    ValueTask<string?> QemuAgentCommandAsync(RemoteDomain domain, string command, int timeout, uint flags, CancellationToken cancellationToken);

    /// <summary>STORAGE_POOL_LOOKUP_BY_TARGET_PATH (virtnbdrestore tolerates an error).</summary>
    ValueTask<RemoteStoragePool> LookupStoragePoolByTargetPathAsync(string path, CancellationToken cancellationToken);
}

/// <summary>Checkpoint procedures (DOMAIN_CHECKPOINT_*, DOMAIN_LIST_ALL_CHECKPOINTS).</summary>
public interface ICheckpointProcedures
{
    /// <summary>DOMAIN_CHECKPOINT_CREATE_XML (flags 1 REDEFINE, 2 QUIESCE, 4 REDEFINE_VALIDATE).</summary>
    ValueTask<RemoteCheckpoint> CreateCheckpointAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CHECKPOINT_GET_XML_DESC (flags 1 SECURE, 2 NO_DOMAIN, 4 SIZE).</summary>
    ValueTask<string> GetCheckpointXmlAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_LIST_ALL_CHECKPOINTS with virDomainCheckpointListFlags (roots, leaves, topological …).</summary>
    ValueTask<IReadOnlyList<RemoteCheckpoint>> ListAllCheckpointsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CHECKPOINT_LIST_ALL_CHILDREN (flag 1 DESCENDANTS, …).</summary>
    ValueTask<IReadOnlyList<RemoteCheckpoint>> ListCheckpointChildrenAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CHECKPOINT_LOOKUP_BY_NAME; a missing one is NO_DOMAIN_CHECKPOINT (103).</summary>
    ValueTask<RemoteCheckpoint> LookupCheckpointByNameAsync(RemoteDomain domain, string name, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CHECKPOINT_GET_PARENT; a root's must fail with NO_DOMAIN_CHECKPOINT (103).</summary>
    ValueTask<RemoteCheckpoint> GetCheckpointParentAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_CHECKPOINT_DELETE (flags 1 CHILDREN, 2 METADATA_ONLY, 4 CHILDREN_ONLY).</summary>
    ValueTask DeleteCheckpointAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken);
}

/// <summary>Backup and job procedures.</summary>
public interface IBackupJobProcedures
{
    /// <summary>DOMAIN_BACKUP_BEGIN: a <c>&lt;domainbackup&gt;</c> and an optional <c>&lt;domaincheckpoint&gt;</c> (flags 1 REUSE_EXTERNAL).</summary>
    ValueTask BeginBackupAsync(RemoteDomain domain, string backupXml, string? checkpointXml, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_BACKUP_GET_XML_DESC; no job is NO_DOMAIN_BACKUP (104).</summary>
    ValueTask<string> GetBackupXmlAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_JOB_INFO.</summary>
    ValueTask<JobInfo> GetJobInfoAsync(RemoteDomain domain, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_JOB_STATS (flags 1 COMPLETED, 2 KEEP_COMPLETED).</summary>
    ValueTask<JobStats> GetJobStatsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_ABORT_JOB (flags 0) and DOMAIN_ABORT_JOB_FLAGS.</summary>
    ValueTask AbortJobAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken);

    /// <summary>DOMAIN_GET_BLOCK_JOB_INFO for a disk; null when no job runs on it.</summary>
    ValueTask<BlockJobInfo?> GetBlockJobInfoAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken);
}
