using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>Connection-level procedures: open and close, features, identity, event callbacks.</summary>
internal static class ConnectionCalls
{
    public static Task<MessageBuilder>? TryDispatch(CallContext c) => c.Procedure switch
    {
        RemoteProcedure.AuthList => AuthList(c),
        RemoteProcedure.ConnectSupportsFeature => SupportsFeature(c),
        RemoteProcedure.ConnectOpen => OpenAsync(c),
        RemoteProcedure.ConnectClose => Close(c),
        RemoteProcedure.ConnectGetType => StringAsync(c, c.Hypervisor.GetTypeAsync),
        RemoteProcedure.ConnectGetHostname => StringAsync(c, c.Hypervisor.GetHostnameAsync),
        RemoteProcedure.NodeGetInfo => NodeInfoAsync(c),
        RemoteProcedure.ConnectGetUri => StringAsync(c, c.Hypervisor.GetUriAsync),
        RemoteProcedure.ConnectGetVersion => VersionAsync(c, c.Hypervisor.GetVersionAsync),
        RemoteProcedure.ConnectGetLibVersion => VersionAsync(c, c.Hypervisor.GetLibraryVersionAsync),
        RemoteProcedure.ConnectRegisterCloseCallback or RemoteProcedure.ConnectUnregisterCloseCallback => CloseCallback(c),
        RemoteProcedure.ConnectDomainEventCallbackRegisterAny => RegisterEvent(c),
        RemoteProcedure.ConnectDomainEventCallbackDeregisterAny => DeregisterEvent(c),
        _ => null,
    };

    /// <summary>Procedures a client may call before CONNECT_OPEN (virsh asks for feature 10 first).</summary>
    public static bool AllowedBeforeOpen(RemoteProcedure procedure) => procedure is
        RemoteProcedure.AuthList or RemoteProcedure.ConnectSupportsFeature or RemoteProcedure.ConnectOpen or RemoteProcedure.ConnectClose;

    /// <summary>Access is the socket's (mode 0600 and the peer's uid), so the only method is "none".</summary>
    private static Task<MessageBuilder> AuthList(CallContext c)
    {
        c.NoArgs();
        return Task.FromResult(c.Reply(w =>
        {
            w.WriteArrayCount(1, RemoteWire.MaxAuthTypes, "auth types");
            w.WriteInt32((int)RemoteAuthType.None);
        }));
    }

    /// <summary>1 exactly for what this server implements (§4); 0 for every other feature.</summary>
    private static Task<MessageBuilder> SupportsFeature(CallContext c)
    {
        var feature = c.Args((ref XdrReader r) => r.ReadInt32());
        var supported = (RemoteFeature)feature is RemoteFeature.FdPassing or RemoteFeature.TypedParamString or RemoteFeature.ProgramKeepalive
            or RemoteFeature.RemoteEventCallback or RemoteFeature.RemoteCloseCallback;

        // libvirtd starts pinging a client when it asks about keepalive (daemon/remote.c,
        // remoteDispatchConnectSupportsFeature).
        if ((RemoteFeature)feature == RemoteFeature.ProgramKeepalive)
        {
            c.Connection.StartKeepalive();
        }

        return Task.FromResult(c.Reply(w => w.WriteInt32(supported ? 1 : 0)));
    }

    private static async Task<MessageBuilder> OpenAsync(CallContext c)
    {
        var (name, flags) = c.Args((ref XdrReader r) => (r.ReadOptionalString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        if (c.Connection.IsOpened)
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "connection already open");
        }

        await c.Hypervisor.OpenAsync(name, flags, c.CancellationToken).ConfigureAwait(false);
        c.Connection.MarkOpened(name, (flags & ReadOnlyAccess.ConnectReadOnly) != 0);
        return c.Reply();
    }

    /// <summary>The client closes the socket after this reply; the connection ends when it does.</summary>
    private static Task<MessageBuilder> Close(CallContext c)
    {
        c.NoArgs();
        c.Connection.ClearEventCallbacks();

        // Before the reply, as libvirtd runs its close callbacks: a client that opens a new
        // connection next finds the old one's fd groups gone.
        c.Hypervisor.ConnectionClosed(c.Connection);
        return Task.FromResult(c.Reply());
    }

    /// <summary>Tidemark never closes a connection on its own except at shutdown, so there is nothing to register.</summary>
    private static Task<MessageBuilder> CloseCallback(CallContext c)
    {
        c.NoArgs();
        return Task.FromResult(c.Reply());
    }

    private static async Task<MessageBuilder> StringAsync(CallContext c, Func<CancellationToken, ValueTask<string>> get)
    {
        c.NoArgs();
        var value = await get(c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(value, RemoteWire.MaxStringLength));
    }

    private static async Task<MessageBuilder> VersionAsync(CallContext c, Func<CancellationToken, ValueTask<ulong>> get)
    {
        c.NoArgs();
        var value = await get(c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteUInt64(value));
    }

    private static Task<MessageBuilder> RegisterEvent(CallContext c)
    {
        var (eventId, domain) = c.Args((ref XdrReader r) => (r.ReadInt32(), RemoteDomain.ReadOptional(ref r)));
        var callbackId = c.Connection.AddEventCallback((DomainEventId)eventId, domain);
        return Task.FromResult(c.Reply(w => w.WriteInt32(callbackId)));
    }

    private static Task<MessageBuilder> DeregisterEvent(CallContext c)
    {
        var callbackId = c.Args((ref XdrReader r) => r.ReadInt32());
        c.Connection.RemoveEventCallback(callbackId);
        return Task.FromResult(c.Reply());
    }

    private static async Task<MessageBuilder> NodeInfoAsync(CallContext c)
    {
        var info = await c.Hypervisor.GetNodeInfoAsync(c.CancellationToken).ConfigureAwait(false);
        return c.Reply(info.Write);
    }
}
