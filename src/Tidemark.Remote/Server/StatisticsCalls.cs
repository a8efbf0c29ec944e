using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>Statistics: a disk's I/O counters and errors, every domain's stats records (§5).</summary>
internal static class StatisticsCalls
{
    public static Task<MessageBuilder>? TryDispatch(CallContext c) => c.Procedure switch
    {
        RemoteProcedure.DomainBlockStats => BlockStatsAsync(c),
        RemoteProcedure.DomainBlockStatsFlags => BlockStatsFlagsAsync(c),
        RemoteProcedure.DomainGetDiskErrors => DiskErrorsAsync(c),
        RemoteProcedure.ConnectGetAllDomainStats => AllDomainStatsAsync(c),
        _ => null,
    };

    /// <summary>remote_domain_block_stats_args { dom, path } → remote_domain_block_stats_ret.</summary>
    private static async Task<MessageBuilder> BlockStatsAsync(CallContext c)
    {
        var (domain, path) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength)));
        var stats = await c.Hypervisor.GetBlockStatsAsync(domain, path, 0, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(stats.Write);
    }

    /// <summary>
    /// remote_domain_block_stats_flags_args { dom, path, nparams, flags } → { params, nparams }.
    /// nparams 0 asks how many there are (the count comes back in nparams, no params); otherwise
    /// at most nparams come back, as remoteDispatchDomainBlockStatsFlags answers.
    /// </summary>
    private static async Task<MessageBuilder> BlockStatsFlagsAsync(CallContext c)
    {
        var (domain, path, nparams, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadString(RemoteWire.MaxStringLength), r.ReadInt32(), r.ReadUInt32()));
        if (nparams is < 0 or > RemoteWire.MaxBlockStatsParams)
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "nparams too large");
        }

        var stats = await c.Hypervisor.GetBlockStatsAsync(domain, path, flags, c.CancellationToken).ConfigureAwait(false);
        var parameters = stats.ToParameters();
        var sent = parameters.Take(nparams).ToList();
        return c.Reply(w =>
        {
            TypedParameter.WriteList(w, sent, RemoteWire.MaxBlockStatsParams, "block stats");
            w.WriteInt32(nparams == 0 ? parameters.Count : sent.Count);
        });
    }

    /// <summary>
    /// remote_domain_get_disk_errors_args { dom, maxerrors, flags } → { errors, nerrors }:
    /// maxerrors 0 asks for the count, otherwise at most maxerrors come back.
    /// </summary>
    private static async Task<MessageBuilder> DiskErrorsAsync(CallContext c)
    {
        var (domain, maxErrors, flags) = c.Args((ref XdrReader r) => (RemoteDomain.Read(ref r), r.ReadUInt32(), r.ReadUInt32()));
        if (maxErrors > RemoteWire.MaxDiskErrors)
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Rpc, "maxerrors too large");
        }

        var errors = await c.Hypervisor.GetDiskErrorsAsync(domain, flags, c.CancellationToken).ConfigureAwait(false);
        var sent = errors.Take((int)maxErrors).ToList();
        return c.Reply(w =>
        {
            w.WriteArrayCount(sent.Count, RemoteWire.MaxDiskErrors, "disk errors");
            foreach (var error in sent)
            {
                error.Write(w);
            }

            w.WriteInt32(maxErrors == 0 ? errors.Count : sent.Count);
        });
    }

    /// <summary>remote_connect_get_all_domain_stats_args { doms, stats, flags } → { retStats }.</summary>
    private static async Task<MessageBuilder> AllDomainStatsAsync(CallContext c)
    {
        var (domains, stats, flags) = c.Args((ref XdrReader r) =>
        {
            var count = r.ReadArrayCount(RemoteWire.MaxDomainList, 24, "domains");
            var list = new RemoteDomain[count];
            for (var i = 0; i < count; i++)
            {
                list[i] = RemoteDomain.Read(ref r);
            }

            return ((IReadOnlyList<RemoteDomain>)list, r.ReadUInt32(), r.ReadUInt32());
        });
        var records = await c.Hypervisor.GetAllDomainStatsAsync(domains, stats, flags, c.CancellationToken).ConfigureAwait(false);
        return c.Reply(w =>
        {
            w.WriteArrayCount(records.Count, RemoteWire.MaxDomainList, "domain stats records");
            foreach (var record in records)
            {
                record.Write(w);
            }
        });
    }
}
