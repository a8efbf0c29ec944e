using Microsoft.Win32.SafeHandles;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>One call being dispatched: its message, the connection it came on, and how to answer it.</summary>
internal sealed class CallContext(RemoteConnection connection, RemoteMessage call, IRemoteHypervisor hypervisor, CancellationToken cancellationToken)
{
    public RemoteConnection Connection { get; } = connection;

    public IRemoteHypervisor Hypervisor { get; } = hypervisor;

    public CancellationToken CancellationToken { get; } = cancellationToken;

    public RemoteProcedure Procedure => (RemoteProcedure)call.Header.Procedure;

    /// <summary>The procedure number, of whichever program.</summary>
    public uint ProcedureNumber => call.Header.Procedure;

    /// <summary>The program called: REMOTE or QEMU.</summary>
    public uint Program => call.Header.Program;

    /// <summary>The public API behind the call, as libvirt names it in errors.</summary>
    public string ApiName => ApiNames.Of(call.Header.Program, call.Header.Procedure);

    /// <summary>The file descriptors that came with the call (CALL_WITH_FDS), closed after it unless taken.</summary>
    public SafeFileHandle[] Fds { get; init; } = [];

    /// <summary>Whether <see cref="TakeFds"/> handed the descriptors on.</summary>
    public bool FdsTaken { get; private set; }

    /// <summary>The call's descriptors, now the taker's to close.</summary>
    public SafeFileHandle[] TakeFds()
    {
        FdsTaken = true;
        return Fds;
    }

    /// <summary>The call's arguments, decoded completely: a payload with bytes left over is malformed.</summary>
    public T Args<T>(XdrDecoder<T> decode)
    {
        var reader = new XdrReader(call.Payload.Span);
        var value = decode(ref reader);
        reader.EnsureEnd(ApiName);
        return value;
    }

    /// <summary>For a <c>(void)</c> call: refuses a payload.</summary>
    public void NoArgs() => new XdrReader(call.Payload.Span).EnsureEnd(ApiName);

    /// <summary>A <c>(void)</c> reply.</summary>
    public MessageBuilder Reply() => new(call.Header.Program, call.Header.Procedure, RemoteMessageType.Reply, call.Header.Serial, RemoteMessageStatus.Ok);

    /// <summary>A reply whose payload <paramref name="write"/> writes.</summary>
    public MessageBuilder Reply(Action<XdrWriter> write)
    {
        var reply = Reply();
        write(reply.Payload);
        return reply;
    }

    /// <summary>An ERROR reply carrying <paramref name="error"/> as <c>remote_error</c>.</summary>
    public static MessageBuilder ErrorReply(MessageHeader call, LibvirtError error)
    {
        var reply = new MessageBuilder(call.Program, call.Procedure, RemoteMessageType.Reply, call.Serial, RemoteMessageStatus.Error, call.Version);
        RemoteErrorRecord.From(error).Write(reply.Payload);
        return reply;
    }
}
