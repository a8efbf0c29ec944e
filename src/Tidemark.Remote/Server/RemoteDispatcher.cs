using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Server;

/// <summary>
/// Routes one CALL to its procedure group. Before CONNECT_OPEN only the handshake procedures
/// are served; a procedure no group knows is answered NO_SUPPORT with libvirt's API name. The
/// QEMU program's calls go to <see cref="QemuProgramCalls"/>.
/// </summary>
internal static class RemoteDispatcher
{
    public static Task<MessageBuilder> DispatchAsync(CallContext c)
    {
        var handshake = c.Program == RemoteWire.RemoteProgram && ConnectionCalls.AllowedBeforeOpen(c.Procedure);
        if (!c.Connection.IsOpened && !handshake)
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "connection not open");
        }

        if (c.Program == RemoteWire.QemuProgram)
        {
            return QemuProgramCalls.DispatchAsync(c);
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
