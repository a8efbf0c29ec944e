using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Server;

/// <summary>
/// Routes one CALL to its procedure group. Before CONNECT_OPEN only the handshake procedures
/// are served; a procedure no group knows is answered NO_SUPPORT with libvirt's API name.
/// </summary>
internal static class RemoteDispatcher
{
    public static Task<MessageBuilder> DispatchAsync(CallContext c)
    {
        if (!c.Connection.IsOpened && !ConnectionCalls.AllowedBeforeOpen(c.Procedure))
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "connection not open");
        }

        ReadOnlyAccess.Check(c.Connection, c.Procedure);
        return ConnectionCalls.TryDispatch(c)
            ?? DomainCalls.TryDispatch(c)
            ?? CheckpointCalls.TryDispatch(c)
            ?? BackupJobCalls.TryDispatch(c)
            ?? StatisticsCalls.TryDispatch(c)
            ?? throw LibvirtError.NoSupport(ApiNames.Of((uint)c.Procedure));
    }
}
