using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>Checkpoint procedures (411–417).</summary>
internal static class CheckpointCalls
{
    public static Task<MessageBuilder>? TryDispatch(CallContext c) => c.Procedure switch
    {
        RemoteProcedure.DomainCheckpointCreateXml => CreateAsync(c),
        RemoteProcedure.DomainCheckpointGetXmlDesc => GetXmlAsync(c),
        RemoteProcedure.DomainListAllCheckpoints => ListAllAsync(c),
        RemoteProcedure.DomainCheckpointListAllChildren => ListChildrenAsync(c),
        RemoteProcedure.DomainCheckpointLookupByName => LookupAsync(c),
        RemoteProcedure.DomainCheckpointGetParent => GetParentAsync(c),
        RemoteProcedure.DomainCheckpointDelete => DeleteAsync(c),
        _ => null,
    };

    private static async Task<MessageBuilder> CreateAsync(CallContext c)
    {
        var (domain, xml, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        var checkpoint = await c.Hypervisor.CreateCheckpointAsync(domain, xml, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(checkpoint.Write);
    }

    private static async Task<MessageBuilder> GetXmlAsync(CallContext c)
    {
        var (checkpoint, flags) = c.Args((ref XdrReader r) => (RemoteCheckpoint.Read(ref r), r.ReadUInt32()));
        ReadOnlyAccess.CheckCheckpointXml(c.Connection, flags);
        var xml = await c.Hypervisor.GetCheckpointXmlAsync(checkpoint, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(xml, RemoteWire.MaxStringLength));
    }

    private static async Task<MessageBuilder> ListAllAsync(CallContext c)
    {
        var (domain, needResults, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadInt32(), r.ReadUInt32()));
        var list = await c.Hypervisor.ListAllCheckpointsAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => WriteList(w, list, needResults));
    }

    private static async Task<MessageBuilder> ListChildrenAsync(CallContext c)
    {
        var (checkpoint, needResults, flags) = c.Args((ref XdrReader r) => (RemoteCheckpoint.Read(ref r), r.ReadInt32(), r.ReadUInt32()));
        var list = await c.Hypervisor.ListCheckpointChildrenAsync(checkpoint, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => WriteList(w, list, needResults));
    }

    private static async Task<MessageBuilder> LookupAsync(CallContext c)
    {
        var (domain, name, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        var checkpoint = await c.Hypervisor.LookupCheckpointByNameAsync(domain, name, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(checkpoint.Write);
    }

    private static async Task<MessageBuilder> GetParentAsync(CallContext c)
    {
        var (checkpoint, flags) = c.Args((ref XdrReader r) => (RemoteCheckpoint.Read(ref r), r.ReadUInt32()));
        var parent = await c.Hypervisor.GetCheckpointParentAsync(checkpoint, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(parent.Write);
    }

    private static async Task<MessageBuilder> DeleteAsync(CallContext c)
    {
        var (checkpoint, flags) = c.Args((ref XdrReader r) => (RemoteCheckpoint.Read(ref r), r.ReadUInt32()));
        await c.Hypervisor.DeleteCheckpointAsync(checkpoint, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    /// <summary>As for domains: need_results 0 sends only the count in <c>ret</c> (an int here).</summary>
    private static void WriteList(XdrWriter w, IReadOnlyList<RemoteCheckpoint> list, int needResults)
    {
        var sent = needResults != 0 ? list : [];
        w.WriteArrayCount(sent.Count, RemoteWire.MaxCheckpoints, "checkpoints");
        foreach (var cp in sent)
        {
            cp.Write(w);
        }

        w.WriteInt32(list.Count);
    }

    internal static IReadOnlyList<RemoteCheckpoint> ReadList(ref XdrReader reader)
    {
        var count = reader.ReadArrayCount(RemoteWire.MaxCheckpoints, RemoteCheckpoint.MinWireSize, "checkpoints");
        var list = new RemoteCheckpoint[count];
        for (var i = 0; i < count; i++)
        {
            list[i] = RemoteCheckpoint.Read(ref reader);
        }

        reader.ReadInt32();
        return list;
    }
}
