using Tidemark.Remote.Protocol;
using Tidemark.Remote.Server;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Client;

/// <summary>One typed method per procedure of libvirt-rpc.md §5, named after libvirt's API.</summary>
public sealed partial class LibvirtClient
{
    private static readonly XdrDecoder<RemoteDomain> DomainRet = (ref XdrReader r) => RemoteDomain.Read(ref r);
    private static readonly XdrDecoder<RemoteCheckpoint> CheckpointRet = (ref XdrReader r) => RemoteCheckpoint.Read(ref r);
    private static readonly XdrDecoder<string> StringRet = (ref XdrReader r) => r.ReadString(RemoteWire.MaxStringLength);
    private static readonly XdrDecoder<bool> BoolRet = (ref XdrReader r) => r.ReadInt32() != 0;

    private static Action<XdrWriter> DomainArgs(RemoteDomain domain) => domain.Write;

    private static Action<XdrWriter> DomainFlagsArgs(RemoteDomain domain, uint flags) => w =>
    {
        domain.Write(w);
        w.WriteUInt32(flags);
    };

    private static Action<XdrWriter> CheckpointFlagsArgs(RemoteCheckpoint checkpoint, uint flags) => w =>
    {
        checkpoint.Write(w);
        w.WriteUInt32(flags);
    };

    // Connection

    /// <summary>virConnectGetType.</summary>
    public Task<string> GetTypeAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectGetType, null, StringRet, cancellationToken);

    /// <summary>virConnectGetVersion.</summary>
    public Task<ulong> GetVersionAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectGetVersion, null, (ref XdrReader r) => r.ReadUInt64(), cancellationToken);

    /// <summary>virConnectGetLibVersion.</summary>
    public Task<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectGetLibVersion, null, (ref XdrReader r) => r.ReadUInt64(), cancellationToken);

    /// <summary>virConnectGetHostname.</summary>
    public Task<string> GetHostnameAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectGetHostname, null, StringRet, cancellationToken);

    /// <summary>virConnectGetURI.</summary>
    public Task<string> GetUriAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectGetUri, null, StringRet, cancellationToken);

    // Domains

    /// <summary>virConnectListAllDomains (flags: 1 ACTIVE, 2 INACTIVE, …; 0 for all).</summary>
    public Task<IReadOnlyList<RemoteDomain>> ListAllDomainsAsync(uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectListAllDomains, w =>
        {
            w.WriteInt32(1);
            w.WriteUInt32(flags);
        }, (ref XdrReader r) =>
        {
            var count = r.ReadArrayCount(RemoteWire.MaxDomains, RemoteDomain.MinWireSize, "domains");
            var list = new RemoteDomain[count];
            for (var i = 0; i < count; i++)
            {
                list[i] = RemoteDomain.Read(ref r);
            }

            r.ReadUInt32();
            return (IReadOnlyList<RemoteDomain>)list;
        }, cancellationToken);

    /// <summary>virDomainLookupByID.</summary>
    public Task<RemoteDomain> LookupDomainByIdAsync(int id, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainLookupById, w => w.WriteInt32(id), DomainRet, cancellationToken);

    /// <summary>virDomainLookupByName.</summary>
    public Task<RemoteDomain> LookupDomainByNameAsync(string name, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainLookupByName, w => w.WriteString(name, RemoteWire.MaxStringLength), DomainRet, cancellationToken);

    /// <summary>virDomainLookupByUUID.</summary>
    public Task<RemoteDomain> LookupDomainByUuidAsync(Guid uuid, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainLookupByUuid, w => RemoteDomain.WriteUuid(w, uuid), DomainRet, cancellationToken);

    /// <summary>virDomainDefineXML (flags 0) or virDomainDefineXMLFlags.</summary>
    public Task<RemoteDomain> DefineDomainAsync(string xml, uint flags = 0, CancellationToken cancellationToken = default) =>
        flags == 0
            ? _channel.CallAsync(RemoteProcedure.DomainDefineXml, w => w.WriteString(xml, RemoteWire.MaxStringLength), DomainRet, cancellationToken)
            : _channel.CallAsync(RemoteProcedure.DomainDefineXmlFlags, w =>
            {
                w.WriteString(xml, RemoteWire.MaxStringLength);
                w.WriteUInt32(flags);
            }, DomainRet, cancellationToken);

    /// <summary>virNodeGetInfo.</summary>
    public Task<NodeInfo> GetNodeInfoAsync(CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.NodeGetInfo, null, (ref XdrReader r) => NodeInfo.Read(ref r), cancellationToken);

    /// <summary>virDomainGetDiskErrors: asks for the count, then for that many, as libvirt's clients do.</summary>
    public async Task<IReadOnlyList<(string Disk, DiskErrorCode Error)>> GetDiskErrorsAsync(RemoteDomain domain, CancellationToken cancellationToken = default)
    {
        var count = (await _channel.CallAsync(RemoteProcedure.DomainGetDiskErrors, DiskErrorsArgs(domain, 0), DiskErrorsRet, cancellationToken).ConfigureAwait(false)).Count;
        return count == 0 ? [] : (await _channel.CallAsync(RemoteProcedure.DomainGetDiskErrors, DiskErrorsArgs(domain, (uint)count), DiskErrorsRet, cancellationToken).ConfigureAwait(false)).Errors;
    }

    /// <summary>virDomainAttachDeviceFlags, or virDomainAttachDevice (LIVE) when <paramref name="flags"/> is null.</summary>
    public Task AttachDeviceAsync(RemoteDomain domain, string xml, uint? flags, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(flags is null ? RemoteProcedure.DomainAttachDevice : RemoteProcedure.DomainAttachDeviceFlags, DeviceArgs(domain, xml, flags), cancellationToken);

    /// <summary>virDomainDetachDeviceFlags, or virDomainDetachDevice (LIVE) when <paramref name="flags"/> is null.</summary>
    public Task DetachDeviceAsync(RemoteDomain domain, string xml, uint? flags, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(flags is null ? RemoteProcedure.DomainDetachDevice : RemoteProcedure.DomainDetachDeviceFlags, DeviceArgs(domain, xml, flags), cancellationToken);

    /// <summary>virDomainUpdateDeviceFlags: changes the device <paramref name="xml"/> names (a drive's media).</summary>
    public Task UpdateDeviceAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainUpdateDeviceFlags, DeviceArgs(domain, xml, flags), cancellationToken);

    /// <summary>virDomainDetachDeviceAlias: removes the device whose alias is <paramref name="alias"/>.</summary>
    public Task DetachDeviceAliasAsync(RemoteDomain domain, string alias, uint flags, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainDetachDeviceAlias, DeviceArgs(domain, alias, flags), cancellationToken);

    /// <summary>virDomainBlockResize: <paramref name="size"/> in KiB, or bytes with flag 1.</summary>
    public Task ResizeBlockAsync(RemoteDomain domain, string disk, ulong size, uint flags, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainBlockResize, w =>
        {
            domain.Write(w);
            w.WriteString(disk, RemoteWire.MaxStringLength);
            w.WriteUInt64(size);
            w.WriteUInt32(flags);
        }, cancellationToken);

    /// <summary>virDomainRename: an inactive domain takes <paramref name="newName"/>.</summary>
    public Task RenameDomainAsync(RemoteDomain domain, string newName, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(newName);
        return _channel.CallAsync(RemoteProcedure.DomainRename, w =>
        {
            domain.Write(w);
            w.WriteOptionalString(newName, RemoteWire.MaxStringLength);
            w.WriteUInt32(0);
        }, (ref XdrReader r) => r.ReadInt32(), cancellationToken);
    }

    /// <summary>virDomainUndefine (flags 0) or virDomainUndefineFlags.</summary>
    public Task UndefineDomainAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        flags == 0
            ? _channel.CallAsync(RemoteProcedure.DomainUndefine, DomainArgs(domain), cancellationToken)
            : _channel.CallAsync(RemoteProcedure.DomainUndefineFlags, DomainFlagsArgs(domain, flags), cancellationToken);

    /// <summary>virDomainCreateWithFlags: starts the domain and returns it with its new id.</summary>
    public Task<RemoteDomain> StartDomainAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCreateWithFlags, DomainFlagsArgs(domain, flags), DomainRet, cancellationToken);

    /// <summary>virDomainCreate (the flagless form older servers know).</summary>
    public Task CreateDomainAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCreate, DomainArgs(domain), cancellationToken);

    /// <summary>virDomainDestroy (flags 0) or virDomainDestroyFlags.</summary>
    public Task DestroyDomainAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        flags == 0
            ? _channel.CallAsync(RemoteProcedure.DomainDestroy, DomainArgs(domain), cancellationToken)
            : _channel.CallAsync(RemoteProcedure.DomainDestroyFlags, DomainFlagsArgs(domain, flags), cancellationToken);

    /// <summary>virDomainShutdown (flags 0) or virDomainShutdownFlags.</summary>
    public Task ShutdownDomainAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        flags == 0
            ? _channel.CallAsync(RemoteProcedure.DomainShutdown, DomainArgs(domain), cancellationToken)
            : _channel.CallAsync(RemoteProcedure.DomainShutdownFlags, DomainFlagsArgs(domain, flags), cancellationToken);

    /// <summary>virDomainSuspend.</summary>
    public Task SuspendDomainAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainSuspend, DomainArgs(domain), cancellationToken);

    /// <summary>virDomainResume.</summary>
    public Task ResumeDomainAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainResume, DomainArgs(domain), cancellationToken);

    /// <summary>virDomainGetState.</summary>
    public Task<DomainStateInfo> GetDomainStateAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetState, DomainFlagsArgs(domain, flags), (ref XdrReader r) => DomainStateInfo.Read(ref r), cancellationToken);

    /// <summary>virDomainGetInfo.</summary>
    public Task<DomainInfo> GetDomainInfoAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetInfo, DomainArgs(domain), (ref XdrReader r) => DomainInfo.Read(ref r), cancellationToken);

    /// <summary>virDomainIsActive.</summary>
    public Task<bool> IsDomainActiveAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainIsActive, DomainArgs(domain), BoolRet, cancellationToken);

    /// <summary>virDomainIsPersistent.</summary>
    public Task<bool> IsDomainPersistentAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainIsPersistent, DomainArgs(domain), BoolRet, cancellationToken);

    /// <summary>virDomainGetXMLDesc.</summary>
    public Task<string> GetDomainXmlAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetXmlDesc, DomainFlagsArgs(domain, flags), StringRet, cancellationToken);

    /// <summary>virDomainGetOSType: "hvm" for a full virtual machine.</summary>
    public Task<string> GetOsTypeAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetOsType, DomainArgs(domain), StringRet, cancellationToken);

    /// <summary>virDomainHasManagedSaveImage.</summary>
    public Task<bool> HasManagedSaveImageAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainHasManagedSaveImage, DomainFlagsArgs(domain, flags), BoolRet, cancellationToken);

    /// <summary>virDomainGetAutostart.</summary>
    public Task<bool> GetAutostartAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetAutostart, DomainArgs(domain), BoolRet, cancellationToken);

    /// <summary>virDomainSetAutostart.</summary>
    public Task SetAutostartAsync(RemoteDomain domain, bool autostart, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainSetAutostart, w =>
        {
            domain.Write(w);
            w.WriteInt32(autostart ? 1 : 0);
        }, cancellationToken);

    /// <summary>virDomainGetBlockInfo.</summary>
    public Task<BlockInfo> GetBlockInfoAsync(RemoteDomain domain, string path, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetBlockInfo, DomainPathFlagsArgs(domain, path, flags), (ref XdrReader r) => BlockInfo.Read(ref r), cancellationToken);

    /// <summary>
    /// virDomainBlockStatsFlags: the counters of a disk (target dev or source path), or of every
    /// disk for an empty <paramref name="path"/>, as typed parameters. Asks for the count first,
    /// then for that many, as libvirt's client does.
    /// </summary>
    public async Task<IReadOnlyList<TypedParameter>> GetBlockStatsAsync(RemoteDomain domain, string path, CancellationToken cancellationToken = default)
    {
        var count = await _channel.CallAsync(RemoteProcedure.DomainBlockStatsFlags, BlockStatsArgs(domain, path, 0), BlockStatsRet, cancellationToken).ConfigureAwait(false);
        var parameters = await _channel.CallAsync(RemoteProcedure.DomainBlockStatsFlags, BlockStatsArgs(domain, path, count.Count), BlockStatsRet, cancellationToken).ConfigureAwait(false);
        return parameters.Parameters;
    }

    /// <summary>virDomainGetGuestInfo.</summary>
    public Task<IReadOnlyList<TypedParameter>> GetGuestInfoAsync(RemoteDomain domain, uint types, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetGuestInfo, w =>
        {
            domain.Write(w);
            w.WriteUInt32(types);
            w.WriteUInt32(flags);
        }, (ref XdrReader r) => TypedParameter.ReadList(ref r, RemoteWire.MaxGuestInfoParams, "guest info"), cancellationToken);

    /// <summary>virDomainFSFreeze: the number of file systems frozen.</summary>
    public Task<int> FreezeFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainFsFreeze, MountpointArgs(domain, mountpoints, flags), (ref XdrReader r) => r.ReadInt32(), cancellationToken);

    /// <summary>virDomainFSThaw: the number of file systems thawed.</summary>
    public Task<int> ThawFilesystemsAsync(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainFsThaw, MountpointArgs(domain, mountpoints, flags), (ref XdrReader r) => r.ReadInt32(), cancellationToken);

    /// <summary>virStoragePoolLookupByTargetPath.</summary>
    public Task<RemoteStoragePool> LookupStoragePoolByTargetPathAsync(string path, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.StoragePoolLookupByTargetPath, w => w.WriteString(path, RemoteWire.MaxStringLength), (ref XdrReader r) => RemoteStoragePool.Read(ref r), cancellationToken);

    // Checkpoints

    /// <summary>virDomainCheckpointCreateXML (flags 1 REDEFINE, 2 QUIESCE, 4 REDEFINE_VALIDATE).</summary>
    public Task<RemoteCheckpoint> CreateCheckpointAsync(RemoteDomain domain, string xml, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointCreateXml, w =>
        {
            domain.Write(w);
            w.WriteString(xml, RemoteWire.MaxStringLength);
            w.WriteUInt32(flags);
        }, CheckpointRet, cancellationToken);

    /// <summary>virDomainCheckpointGetXMLDesc (flags 1 SECURE, 2 NO_DOMAIN, 4 SIZE).</summary>
    public Task<string> GetCheckpointXmlAsync(RemoteCheckpoint checkpoint, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointGetXmlDesc, CheckpointFlagsArgs(checkpoint, flags), StringRet, cancellationToken);

    /// <summary>virDomainListAllCheckpoints.</summary>
    public Task<IReadOnlyList<RemoteCheckpoint>> ListAllCheckpointsAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainListAllCheckpoints, w =>
        {
            domain.Write(w);
            w.WriteInt32(1);
            w.WriteUInt32(flags);
        }, (ref XdrReader r) => CheckpointCalls.ReadList(ref r), cancellationToken);

    /// <summary>virDomainCheckpointListAllChildren.</summary>
    public Task<IReadOnlyList<RemoteCheckpoint>> ListCheckpointChildrenAsync(RemoteCheckpoint checkpoint, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointListAllChildren, w =>
        {
            checkpoint.Write(w);
            w.WriteInt32(1);
            w.WriteUInt32(flags);
        }, (ref XdrReader r) => CheckpointCalls.ReadList(ref r), cancellationToken);

    /// <summary>virDomainCheckpointLookupByName; a missing checkpoint is code 103.</summary>
    public Task<RemoteCheckpoint> LookupCheckpointByNameAsync(RemoteDomain domain, string name, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointLookupByName, DomainPathFlagsArgs(domain, name, flags), CheckpointRet, cancellationToken);

    /// <summary>virDomainCheckpointGetParent; a root's parent is code 103.</summary>
    public Task<RemoteCheckpoint> GetCheckpointParentAsync(RemoteCheckpoint checkpoint, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointGetParent, CheckpointFlagsArgs(checkpoint, flags), CheckpointRet, cancellationToken);

    /// <summary>virDomainCheckpointDelete (flags 1 CHILDREN, 2 METADATA_ONLY, 4 CHILDREN_ONLY).</summary>
    public Task DeleteCheckpointAsync(RemoteCheckpoint checkpoint, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainCheckpointDelete, CheckpointFlagsArgs(checkpoint, flags), cancellationToken);

    // Backups and jobs

    /// <summary>virDomainBackupBegin.</summary>
    public Task BeginBackupAsync(RemoteDomain domain, string backupXml, string? checkpointXml = null, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainBackupBegin, w =>
        {
            domain.Write(w);
            w.WriteString(backupXml, RemoteWire.MaxStringLength);
            w.WriteOptionalString(checkpointXml, RemoteWire.MaxStringLength);
            w.WriteUInt32(flags);
        }, cancellationToken);

    /// <summary>virDomainBackupGetXMLDesc; no job is code 104.</summary>
    public Task<string> GetBackupXmlAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainBackupGetXmlDesc, DomainFlagsArgs(domain, flags), StringRet, cancellationToken);

    /// <summary>virDomainGetJobInfo.</summary>
    public Task<JobInfo> GetJobInfoAsync(RemoteDomain domain, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetJobInfo, DomainArgs(domain), (ref XdrReader r) => JobInfo.Read(ref r), cancellationToken);

    /// <summary>virDomainGetJobStats (flags 1 COMPLETED, 2 KEEP_COMPLETED).</summary>
    public Task<JobStats> GetJobStatsAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetJobStats, DomainFlagsArgs(domain, flags), (ref XdrReader r) => JobStats.Read(ref r), cancellationToken);

    /// <summary>virDomainAbortJob (flags 0) or virDomainAbortJobFlags.</summary>
    public Task AbortJobAsync(RemoteDomain domain, uint flags = 0, CancellationToken cancellationToken = default) =>
        flags == 0
            ? _channel.CallAsync(RemoteProcedure.DomainAbortJob, DomainArgs(domain), cancellationToken)
            : _channel.CallAsync(RemoteProcedure.DomainAbortJobFlags, DomainFlagsArgs(domain, flags), cancellationToken);

    /// <summary>virDomainGetBlockJobInfo: null when no job runs on the disk.</summary>
    public Task<BlockJobInfo?> GetBlockJobInfoAsync(RemoteDomain domain, string path, uint flags = 0, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.DomainGetBlockJobInfo, DomainPathFlagsArgs(domain, path, flags), (ref XdrReader r) => BlockJobInfo.Read(ref r), cancellationToken);

    private static Action<XdrWriter> DiskErrorsArgs(RemoteDomain domain, uint maxErrors) => w =>
    {
        domain.Write(w);
        w.WriteUInt32(maxErrors);
        w.WriteUInt32(0);
    };

    private static (IReadOnlyList<(string Disk, DiskErrorCode Error)> Errors, int Count) DiskErrorsRet(ref XdrReader reader)
    {
        var errors = new (string, DiskErrorCode)[reader.ReadArrayCount(RemoteWire.MaxDiskErrors, 8, "disk errors")];
        for (var i = 0; i < errors.Length; i++)
        {
            errors[i] = (reader.ReadString(RemoteWire.MaxStringLength), (DiskErrorCode)reader.ReadInt32());
        }

        return (errors, reader.ReadInt32());
    }

    private static Action<XdrWriter> DeviceArgs(RemoteDomain domain, string xml, uint? flags) => w =>
    {
        domain.Write(w);
        w.WriteString(xml, RemoteWire.MaxStringLength);
        if (flags is { } f)
        {
            w.WriteUInt32(f);
        }
    };

    private static Action<XdrWriter> BlockStatsArgs(RemoteDomain domain, string path, int nparams) => w =>
    {
        domain.Write(w);
        w.WriteString(path, RemoteWire.MaxStringLength);
        w.WriteInt32(nparams);
        w.WriteUInt32(0);
    };

    private static (IReadOnlyList<TypedParameter> Parameters, int Count) BlockStatsRet(ref XdrReader reader) =>
        (TypedParameter.ReadList(ref reader, RemoteWire.MaxBlockStatsParams, "block stats"), reader.ReadInt32());

    private static Action<XdrWriter> DomainPathFlagsArgs(RemoteDomain domain, string text, uint flags) => w =>
    {
        domain.Write(w);
        w.WriteString(text, RemoteWire.MaxStringLength);
        w.WriteUInt32(flags);
    };

    private static Action<XdrWriter> MountpointArgs(RemoteDomain domain, IReadOnlyList<string> mountpoints, uint flags) => w =>
    {
        domain.Write(w);
        w.WriteArrayCount(mountpoints.Count, RemoteWire.MaxFsFreezeMountpoints, "mountpoints");
        foreach (var m in mountpoints)
        {
            w.WriteString(m, RemoteWire.MaxStringLength);
        }

        w.WriteUInt32(flags);
    };
}
