using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>
/// The QEMU program (qemu_protocol.x), which libvirtd serves beside REMOTE: virsh's
/// <c>qemu-agent-command</c>, <c>qemu-monitor-command</c> and <c>qemu-monitor-event</c>. A
/// Tidemark domain has no QEMU monitor to pass commands to, so those calls are NO_SUPPORT, as
/// from a libvirt driver without them; an agent command gets the hypervisor's answer, the one
/// every guest-agent call gets. The read-only refusals are libvirt-qemu.c's, made before the
/// driver is asked.
/// </summary>
internal static class QemuProgramCalls
{
    // qemu_procedure.
    private const uint MonitorCommand = 1;
    private const uint Attach = 2;
    private const uint AgentCommand = 3;
    private const uint MonitorEventRegister = 4;
    private const uint MonitorEventDeregister = 5;
    private const uint MonitorCommandWithFiles = 7;

    public static Task<MessageBuilder> DispatchAsync(CallContext c) => c.ProcedureNumber switch
    {
        MonitorCommand or MonitorCommandWithFiles => Refuse(c, c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32())), readOnlyRefused: true),
        Attach => Refuse(c, c.Args((ref XdrReader r) => (r.ReadUInt32(), r.ReadUInt32())), readOnlyRefused: true),
        AgentCommand => AgentCommandAsync(c),
        MonitorEventRegister => Refuse(c, c.Args((ref XdrReader r) => (RemoteDomain.ReadOptional(ref r), r.ReadOptionalString(RemoteWire.MaxStringLength), r.ReadUInt32())), readOnlyRefused: false),
        MonitorEventDeregister => DeregisterAsync(c),
        _ => throw LibvirtError.NoSupport(c.ApiName),
    };

    /// <summary>qemu_domain_agent_command_args { dom, cmd, timeout, flags }; ret { string* result }.</summary>
    private static async Task<MessageBuilder> AgentCommandAsync(CallContext c)
    {
        var (domain, command, timeout, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadInt32(), r.ReadUInt32()));
        CheckWritable(c);
        var result = await c.Hypervisor.QemuAgentCommandAsync(domain, command, timeout, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteOptionalString(result, RemoteWire.MaxStringLength));
    }

    /// <summary>
    /// qemu_connect_domain_monitor_event_deregister_args { callbackID }: no registration ever
    /// succeeds, so no ID is registered (libvirtd's remote.c words it so).
    /// </summary>
    private static Task<MessageBuilder> DeregisterAsync(CallContext c)
    {
        var callbackId = c.Args((ref XdrReader r) => r.ReadInt32());
        throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, $"qemu domain event callback {callbackId} not registered");
    }

    /// <summary>
    /// NO_SUPPORT, once the arguments are decoded (<paramref name="decoded"/>: malformed ones are
    /// an RPC error first, as with every call).
    /// </summary>
    private static Task<MessageBuilder> Refuse<T>(CallContext c, T decoded, bool readOnlyRefused)
    {
        _ = decoded;
        if (readOnlyRefused)
        {
            CheckWritable(c);
        }

        throw LibvirtError.NoSupport(c.ApiName);
    }

    private static void CheckWritable(CallContext c)
    {
        if (c.Connection.IsReadOnly)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationDenied, VirErrorDomain.Domain, $"read only access prevents {c.ApiName}");
        }
    }
}
