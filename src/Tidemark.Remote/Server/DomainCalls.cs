using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>Domain procedures: listing, lookup, definition, life cycle and queries (§5).</summary>
internal static class DomainCalls
{
    public static Task<MessageBuilder>? TryDispatch(CallContext c) => c.Procedure switch
    {
        RemoteProcedure.ConnectListAllDomains => ListAllAsync(c),
        RemoteProcedure.DomainLookupById => LookupAsync(c, c.Args((ref XdrReader r) => r.ReadInt32()), c.Hypervisor.LookupDomainByIdAsync),
        RemoteProcedure.DomainLookupByName => LookupAsync(c, c.Args((ref XdrReader r) => r.ReadString(RemoteWire.MaxStringLength)), c.Hypervisor.LookupDomainByNameAsync),
        RemoteProcedure.DomainLookupByUuid => LookupAsync(c, c.Args((ref XdrReader r) => RemoteDomain.ReadUuid(ref r)), c.Hypervisor.LookupDomainByUuidAsync),
        RemoteProcedure.DomainDefineXml => DefineAsync(c, c.Args((ref XdrReader r) => (r.ReadString(RemoteWire.MaxStringLength), 0u))),
        RemoteProcedure.DomainDefineXmlFlags => DefineAsync(c, c.Args((ref XdrReader r) => (r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()))),
        RemoteProcedure.DomainUndefine => VoidAsync(c, DomainOnly(c), c.Hypervisor.UndefineDomainAsync),
        RemoteProcedure.DomainUndefineFlags => VoidAsync(c, DomainAndFlags(c), c.Hypervisor.UndefineDomainAsync),
        RemoteProcedure.DomainRename => RenameAsync(c),
        RemoteProcedure.DomainBlockResize => ResizeBlockAsync(c),
        RemoteProcedure.DomainAttachDevice => DeviceAsync(c, c.Hypervisor.AttachDeviceAsync, flags: false),
        RemoteProcedure.DomainAttachDeviceFlags => DeviceAsync(c, c.Hypervisor.AttachDeviceAsync, flags: true),
        RemoteProcedure.DomainDetachDevice => DeviceAsync(c, c.Hypervisor.DetachDeviceAsync, flags: false),
        RemoteProcedure.DomainDetachDeviceFlags => DeviceAsync(c, c.Hypervisor.DetachDeviceAsync, flags: true),
        RemoteProcedure.DomainDetachDeviceAlias => DeviceAsync(c, c.Hypervisor.DetachDeviceAliasAsync, flags: true),
        RemoteProcedure.DomainUpdateDeviceFlags => DeviceAsync(c, c.Hypervisor.UpdateDeviceAsync, flags: true),
        RemoteProcedure.DomainCreate => StartAsync(c, DomainOnly(c), plain: true),
        RemoteProcedure.DomainCreateWithFlags => StartAsync(c, DomainAndFlags(c), plain: false),
        RemoteProcedure.DomainCreateXml => CreateAsync(c, c.Args((ref XdrReader r) => (r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()))),
        RemoteProcedure.DomainDestroy => VoidAsync(c, DomainOnly(c), c.Hypervisor.DestroyDomainAsync),
        RemoteProcedure.DomainDestroyFlags => VoidAsync(c, DomainAndFlags(c), c.Hypervisor.DestroyDomainAsync),
        RemoteProcedure.DomainShutdown => VoidAsync(c, DomainOnly(c), c.Hypervisor.ShutdownDomainAsync),
        RemoteProcedure.DomainShutdownFlags => VoidAsync(c, DomainAndFlags(c), c.Hypervisor.ShutdownDomainAsync),
        RemoteProcedure.DomainSuspend => VoidAsync(c, DomainOnly(c), (d, _, t) => c.Hypervisor.SuspendDomainAsync(d, t)),
        RemoteProcedure.DomainResume => VoidAsync(c, DomainOnly(c), (d, _, t) => c.Hypervisor.ResumeDomainAsync(d, t)),
        RemoteProcedure.DomainGetState => GetStateAsync(c),
        RemoteProcedure.DomainGetInfo => GetInfoAsync(c),
        RemoteProcedure.DomainGetOsType => GetOsTypeAsync(c),
        RemoteProcedure.DomainHasManagedSaveImage => HasManagedSaveImageAsync(c),
        RemoteProcedure.DomainIsActive => BoolAsync(c, c.Hypervisor.IsDomainActiveAsync),
        RemoteProcedure.DomainIsPersistent => BoolAsync(c, c.Hypervisor.IsDomainPersistentAsync),
        RemoteProcedure.DomainGetAutostart => BoolAsync(c, c.Hypervisor.GetAutostartAsync),
        RemoteProcedure.DomainSetAutostart => SetAutostartAsync(c),
        RemoteProcedure.DomainGetXmlDesc => GetXmlAsync(c),
        RemoteProcedure.DomainGetBlockInfo => GetBlockInfoAsync(c),
        RemoteProcedure.DomainGetGuestInfo => GetGuestInfoAsync(c),
        RemoteProcedure.DomainFsFreeze => FreezeAsync(c, c.Hypervisor.FreezeFilesystemsAsync),
        RemoteProcedure.DomainFsThaw => FreezeAsync(c, c.Hypervisor.ThawFilesystemsAsync),
        RemoteProcedure.DomainGetFsInfo => GetFileSystemsAsync(c),
        RemoteProcedure.DomainGetHostname => GetHostnameAsync(c),
        RemoteProcedure.DomainGetTime => GetTimeAsync(c),
        RemoteProcedure.StoragePoolLookupByTargetPath => LookupPoolAsync(c),
        RemoteProcedure.DomainFdAssociate => AssociateFdsAsync(c),
        _ => null,
    };

    /// <summary>remote_domain_fd_associate_args { dom, name, flags }, the descriptors riding with the call.</summary>
    private static async Task<MessageBuilder> AssociateFdsAsync(CallContext c)
    {
        var (domain, name, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        await c.Hypervisor.AssociateFdsAsync(domain, name, c.TakeFds(), flags, c.Connection, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    private static (RemoteDomain Domain, uint Flags) DomainOnly(CallContext c) => c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), 0u));

    private static (RemoteDomain Domain, uint Flags) DomainAndFlags(CallContext c) => c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32()));

    /// <summary>
    /// need_results 0 asks only for the count (libvirt's virConnectNumOf* emulation): the list
    /// is sent empty and <c>ret</c> carries the number.
    /// </summary>
    private static async Task<MessageBuilder> ListAllAsync(CallContext c)
    {
        var (needResults, flags) = c.Args((ref XdrReader r) => (r.ReadInt32(), r.ReadUInt32()));
        var domains = await c.Hypervisor.ListAllDomainsAsync(flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w =>
        {
            var sent = needResults != 0 ? domains : [];
            w.WriteArrayCount(sent.Count, RemoteWire.MaxDomains, "domains");
            foreach (var d in sent)
            {
                d.Write(w);
            }

            w.WriteUInt32((uint)domains.Count);
        });
    }

    private static async Task<MessageBuilder> LookupAsync<T>(CallContext c, T key, Func<T, CancellationToken, ValueTask<RemoteDomain>> lookup)
    {
        var domain = await lookup(key, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(domain.Write);
    }

    private static async Task<MessageBuilder> DefineAsync(CallContext c, (string Xml, uint Flags) args)
    {
        var domain = await c.Hypervisor.DefineDomainAsync(args.Xml, args.Flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(domain.Write);
    }

    /// <summary>remote_domain_create_xml_args { xml_desc, flags } → remote_domain_create_xml_ret { dom }.</summary>
    private static async Task<MessageBuilder> CreateAsync(CallContext c, (string Xml, uint Flags) args)
    {
        var domain = await c.Hypervisor.CreateDomainAsync(args.Xml, args.Flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(domain.Write);
    }

    /// <summary>
    /// remote_domain_attach_device_args { dom, xml } (and the detach one): the old call is
    /// virDomainAttachDeviceFlags with VIR_DOMAIN_AFFECT_LIVE (1), as libvirt's drivers run it;
    /// the _FLAGS one adds the flags.
    /// </summary>
    private static async Task<MessageBuilder> DeviceAsync(CallContext c, Func<RemoteDomain, string, uint, CancellationToken, ValueTask> call, bool flags)
    {
        var (domain, xml, modify) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), flags ? r.ReadUInt32() : 1u));
        await call(domain, xml, modify, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    /// <summary>remote_domain_block_resize_args { dom, disk, unsigned hyper size, flags }.</summary>
    private static async Task<MessageBuilder> ResizeBlockAsync(CallContext c)
    {
        var (domain, disk, size, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt64(), r.ReadUInt32()));
        await c.Hypervisor.ResizeBlockAsync(domain, disk, size, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    /// <summary>remote_domain_rename_args { dom, remote_string new_name, flags } → remote_domain_rename_ret { int retcode }.</summary>
    private static async Task<MessageBuilder> RenameAsync(CallContext c)
    {
        var (domain, newName, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadOptionalString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        await c.Hypervisor.RenameDomainAsync(domain, newName, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteInt32(0));
    }

    /// <summary>DOMAIN_CREATE returns nothing; DOMAIN_CREATE_WITH_FLAGS returns the domain with its new id.</summary>
    private static async Task<MessageBuilder> StartAsync(CallContext c, (RemoteDomain Domain, uint Flags) args, bool plain)
    {
        var started = await c.Hypervisor.StartDomainAsync(args.Domain, args.Flags, c.CancellationToken).ConfigureAwait(false);
        return plain ? c.Reply() : c.Reply(started.Write);
    }

    private static async Task<MessageBuilder> VoidAsync(CallContext c, (RemoteDomain Domain, uint Flags) args, Func<RemoteDomain, uint, CancellationToken, ValueTask> call)
    {
        await call(args.Domain, args.Flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    private static async Task<MessageBuilder> GetStateAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        var state = await c.Hypervisor.GetDomainStateAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(state.Write);
    }

    private static async Task<MessageBuilder> GetInfoAsync(CallContext c)
    {
        var (domain, _) = DomainOnly(c);
        var info = await c.Hypervisor.GetDomainInfoAsync(domain, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(info.Write);
    }

    private static async Task<MessageBuilder> GetOsTypeAsync(CallContext c)
    {
        var (domain, _) = DomainOnly(c);
        var type = await c.Hypervisor.GetOsTypeAsync(domain, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(type, RemoteWire.MaxStringLength));
    }

    private static async Task<MessageBuilder> HasManagedSaveImageAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        var value = await c.Hypervisor.HasManagedSaveImageAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteInt32(value ? 1 : 0));
    }

    private static async Task<MessageBuilder> BoolAsync(CallContext c, Func<RemoteDomain, CancellationToken, ValueTask<bool>> query)
    {
        var (domain, _) = DomainOnly(c);
        var value = await query(domain, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteInt32(value ? 1 : 0));
    }

    private static async Task<MessageBuilder> SetAutostartAsync(CallContext c)
    {
        var (domain, autostart) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadInt32()));
        await c.Hypervisor.SetAutostartAsync(domain, autostart != 0, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    private static async Task<MessageBuilder> GetXmlAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        ReadOnlyAccess.CheckDomainXml(c.Connection, flags);
        var xml = await c.Hypervisor.GetDomainXmlAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(xml, RemoteWire.MaxStringLength));
    }

    private static async Task<MessageBuilder> GetBlockInfoAsync(CallContext c)
    {
        var (domain, path, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        var info = await c.Hypervisor.GetBlockInfoAsync(domain, path, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(info.Write);
    }

    private static async Task<MessageBuilder> GetGuestInfoAsync(CallContext c)
    {
        var (domain, types, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32(), r.ReadUInt32()));
        var info = await c.Hypervisor.GetGuestInfoAsync(domain, types, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => TypedParameter.WriteList(w, info, RemoteWire.MaxGuestInfoParams, "guest info"));
    }

    private static async Task<MessageBuilder> FreezeAsync(CallContext c, Func<RemoteDomain, IReadOnlyList<string>, uint, CancellationToken, ValueTask<int>> call)
    {
        var (domain, mountpoints, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), ReadStrings(ref r, RemoteWire.MaxFsFreezeMountpoints, "mountpoints"), r.ReadUInt32()));
        var count = await call(domain, mountpoints, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteInt32(count));
    }

    /// <summary>remote_domain_get_fsinfo_args { dom, flags }; ret { remote_domain_fsinfo info&lt;&gt;, unsigned int ret }.</summary>
    private static async Task<MessageBuilder> GetFileSystemsAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        var systems = await c.Hypervisor.GetFileSystemsAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w =>
        {
            w.WriteArrayCount(systems.Count, RemoteWire.MaxGuestFileSystems, "file systems");
            foreach (var system in systems)
            {
                system.Write(w);
            }

            w.WriteUInt32((uint)systems.Count);
        });
    }

    /// <summary>remote_domain_get_hostname_args { dom, flags }; ret { hostname }.</summary>
    private static async Task<MessageBuilder> GetHostnameAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        var hostname = await c.Hypervisor.GetHostnameAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(hostname, RemoteWire.MaxStringLength));
    }

    /// <summary>remote_domain_get_time_args { dom, flags }; ret { hyper seconds, unsigned int nseconds }.</summary>
    private static async Task<MessageBuilder> GetTimeAsync(CallContext c)
    {
        var (domain, flags) = DomainAndFlags(c);
        var time = await c.Hypervisor.GetTimeAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w =>
        {
            w.WriteInt64(time.Seconds);
            w.WriteUInt32(time.Nanoseconds);
        });
    }

    private static async Task<MessageBuilder> LookupPoolAsync(CallContext c)
    {
        var path = c.Args((ref XdrReader r) => r.ReadString(RemoteWire.MaxStringLength));
        var pool = await c.Hypervisor.LookupStoragePoolByTargetPathAsync(path, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(pool.Write);
    }

    internal static IReadOnlyList<string> ReadStrings(ref XdrReader reader, int maxCount, string what)
    {
        var count = reader.ReadArrayCount(maxCount, 4, what);
        var list = new string[count];
        for (var i = 0; i < count; i++)
        {
            list[i] = reader.ReadString(RemoteWire.MaxStringLength);
        }

        return list;
    }
}
