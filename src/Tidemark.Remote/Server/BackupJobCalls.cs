using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>Backup and job procedures (421, 422, 163, 164, 298, 238, 442).</summary>
internal static class BackupJobCalls
{
    public static Task<MessageBuilder>? TryDispatch(CallContext c) => c.Procedure switch
    {
        RemoteProcedure.DomainBackupBegin => BeginAsync(c),
        RemoteProcedure.DomainBackupGetXmlDesc => GetXmlAsync(c),
        RemoteProcedure.DomainGetJobInfo => GetJobInfoAsync(c),
        RemoteProcedure.DomainGetJobStats => GetJobStatsAsync(c),
        RemoteProcedure.DomainAbortJob => AbortAsync(c, c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), 0u))),
        RemoteProcedure.DomainAbortJobFlags => AbortAsync(c, c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32()))),
        RemoteProcedure.DomainGetBlockJobInfo => GetBlockJobInfoAsync(c),
        _ => null,
    };

    private static async Task<MessageBuilder> BeginAsync(CallContext c)
    {
        var (domain, backupXml, checkpointXml, flags) = c.Args((ref XdrReader r) => (
            RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadOptionalString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        await c.Hypervisor.BeginBackupAsync(domain, backupXml, checkpointXml, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    private static async Task<MessageBuilder> GetXmlAsync(CallContext c)
    {
        var (domain, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32()));
        var xml = await c.Hypervisor.GetBackupXmlAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => w.WriteString(xml, RemoteWire.MaxStringLength));
    }

    private static async Task<MessageBuilder> GetJobInfoAsync(CallContext c)
    {
        var domain = c.Args((ref XdrReader r) => RemoteDomain.Read(ref r));
        var info = await c.Hypervisor.GetJobInfoAsync(domain, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(info.Write);
    }

    /// <summary>
    /// String statistics (errmsg) are sent as they are: this server answers feature 9
    /// (TYPED_PARAM_STRING) with 1, and every client of the §5 procedures decodes them.
    /// </summary>
    private static async Task<MessageBuilder> GetJobStatsAsync(CallContext c)
    {
        var (domain, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32()));
        var stats = await c.Hypervisor.GetJobStatsAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(stats.Write);
    }

    private static async Task<MessageBuilder> AbortAsync(CallContext c, (RemoteDomain Domain, uint Flags) args)
    {
        await c.Hypervisor.AbortJobAsync(args.Domain, args.Flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply();
    }

    private static async Task<MessageBuilder> GetBlockJobInfoAsync(CallContext c)
    {
        var (domain, path, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadUInt32()));
        var info = await c.Hypervisor.GetBlockJobInfoAsync(domain, path, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w => BlockJobInfo.Write(w, info));
    }
}
