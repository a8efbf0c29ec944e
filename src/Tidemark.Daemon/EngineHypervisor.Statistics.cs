using System.Globalization;
using Tidemark.Engine.Disks;
using Tidemark.Nbd;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;
using Tidemark.Storage;
using EngineDomain = Tidemark.Engine.Domains.Domain;

namespace Tidemark.Daemon;

/// <summary>
/// Statistics as libvirt's QEMU driver gives them: each disk's requests as its NBD export
/// counted them (QEMU's block accounting, <see cref="NbdExportStatistics"/>), the disks whose
/// last request failed, and the state and block groups of virConnectGetAllDomainStats.
/// </summary>
internal sealed partial class EngineHypervisor
{
    // virDomainStatsTypes this daemon has: STATE and BLOCK (no vCPU, balloon, network or perf
    // counters exist without a guest machine).
    private const uint StatsState = 1;
    private const uint StatsBlock = 32;
    private const uint SupportedStats = StatsState | StatsBlock;

    // virConnectGetAllDomainStatsFlags: the list filters (virConnectListAllDomainsFlags' low
    // byte, same bits), NOWAIT, BACKING and ENFORCE_STATS.
    private const uint StatsFilters = 0xFF;
    private const uint StatsNoWait = 1u << 29;
    private const uint StatsBacking = 1u << 30;
    private const uint StatsEnforce = 1u << 31;

    // VIR_TYPED_PARAM_STRING_OKAY.
    private const uint TypedParamStringOkay = 4;

    public ValueTask<BlockStats> GetBlockStatsAsync(RemoteDomain domain, string path, uint flags, CancellationToken cancellationToken) => Call(() =>
    {
        CheckFlags(flags, TypedParamStringOkay, "qemuDomainBlockStatsFlags");
        var found = Find(domain);
        var running = found.Running ?? throw NotRunning();

        // An empty path is every disk together (qemuDomainBlocksStatsGather's total).
        NbdExportCounters counters;
        if (path.Length == 0)
        {
            counters = running.Disks.Aggregate(default(NbdExportCounters), (sum, d) => sum + d.Statistics.Read());
        }
        else
        {
            // A drive without media is still a device of the guest, whose counters QEMU keeps:
            // it has done nothing here.
            var named = found.Definition.DiskByName(path) ?? throw LibvirtError.Create(VirErrorNumber.InvalidArg, VirErrorDomain.Qemu, $"invalid path: {path}");
            counters = running.DiskByTarget(named.TargetDev)?.Statistics.Read() ?? default;
        }

        return new BlockStats(counters.ReadOperations, counters.ReadBytes, counters.WriteOperations, counters.WriteBytes, counters.FlushOperations, counters.ReadNanoseconds, counters.WriteNanoseconds, counters.FlushNanoseconds);
    });

    public ValueTask<IReadOnlyList<DiskError>> GetDiskErrorsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => Call<IReadOnlyList<DiskError>>(() =>
    {
        CheckFlags(flags, 0, "qemuDomainGetDiskErrors");
        var running = Find(domain).Running ?? throw NotRunning();

        // QEMU's io-status, set by the failure that paused the domain: ENOSPC is "no space", any
        // other failure "unspecified error". A failure reported to the guest leaves it "ok".
        return [.. running.Disks
            .Where(d => d.IoStatus != DiskIoStatus.Ok)
            .Select(d => new DiskError(d.Target, d.IoStatus == DiskIoStatus.NoSpace ? DiskErrorCode.NoSpace : DiskErrorCode.Unspecified))];
    });

    public ValueTask<IReadOnlyList<DomainStatsRecord>> GetAllDomainStatsAsync(IReadOnlyList<RemoteDomain> domains, uint stats, uint flags, CancellationToken cancellationToken) => CallAsync<IReadOnlyList<DomainStatsRecord>>(async () =>
    {
        CheckFlags(flags, StatsFilters | StatsNoWait | StatsBacking | StatsEnforce, "qemuConnectGetAllDomainStats");
        if ((flags & StatsEnforce) != 0 && (stats & ~SupportedStats) != 0)
        {
            throw LibvirtError.Create(VirErrorNumber.ArgumentUnsupported, VirErrorDomain.Qemu, $"Stats types bits 0x{stats & ~SupportedStats:x} are not supported by this daemon or QEMU");
        }

        var groups = stats == 0 ? SupportedStats : stats & SupportedStats;

        // Named domains that no longer exist are skipped, as libvirt skips them.
        IEnumerable<EngineDomain> selected = domains.Count == 0
            ? _host.ListDomains().Where(d => Matches(d, flags & StatsFilters))
            : domains.Select(d => _host.ListDomains().FirstOrDefault(e => e.Uuid == d.Uuid)).OfType<EngineDomain>();
        var records = new List<DomainStatsRecord>();
        foreach (var found in selected)
        {
            var parameters = new List<TypedParameter>();
            if ((groups & StatsState) != 0)
            {
                var state = StateOf(found);
                parameters.Add(TypedParameter.Int("state.state", (int)state.State));
                parameters.Add(TypedParameter.Int("state.reason", state.Reason));
            }

            if ((groups & StatsBlock) != 0)
            {
                await AddBlockGroupAsync(found, parameters, (flags & StatsBacking) != 0, cancellationToken).ConfigureAwait(false);
            }

            records.Add(new DomainStatsRecord(Ref(found), parameters));
        }

        return records;
    });

    /// <summary>
    /// The block group (qemuDomainGetStatsBlock): the record count, then per disk its name and
    /// source, while it runs its node index (<c>backingIndex</c>) and counters (a drive without
    /// media too: the guest's device is there), and its allocation, capacity and physical size.
    /// Running, the allocation is the highest byte written since the start (QEMU's
    /// wr_highest_offset) and the physical size what the file system holds (actual-size); shut
    /// off, as virDomainGetBlockInfo gives them. With <paramref name="backing"/> (flag BACKING),
    /// each layer under a running disk's top image follows it as a record of its own: the
    /// disk's name, the layer's file and index, its sizes, no counters
    /// (qemuDomainGetStatsBlockExportDisk, which counts only the frontend's requests).
    /// </summary>
    private static async Task AddBlockGroupAsync(EngineDomain found, List<TypedParameter> parameters, bool backing, CancellationToken cancellationToken)
    {
        var running = found.Running;
        var nodes = running is null ? null : found.DiskNodeIndexes;
        var disks = found.Definition.Disks;
        var layers = disks.Select(d => backing && running?.DiskByTarget(d.TargetDev) is { } r ? r.BackingLayers() : []).ToList();
        parameters.Add(TypedParameter.UInt("block.count", (uint)(disks.Count + layers.Sum(l => l.Count))));
        var record = 0;
        for (var i = 0; i < disks.Count; i++)
        {
            var disk = disks[i];
            var prefix = "block." + record.ToString(CultureInfo.InvariantCulture) + ".";
            record++;
            var indexes = nodes is not null && nodes.TryGetValue(disk.TargetDev, out var numbered) ? numbered : [];
            parameters.Add(TypedParameter.String(prefix + "name", disk.TargetDev));
            var empty = disk.IsEmpty || disk.SourcePath is null;
            if (!empty)
            {
                parameters.Add(TypedParameter.String(prefix + "path", disk.SourcePath!));
            }

            if (running is null)
            {
                if (!empty && await TryBlockInfoAsync(found, disk, disk.SourcePath!, cancellationToken).ConfigureAwait(false) is { } info)
                {
                    AddSizes(parameters, prefix, info);
                }

                continue;
            }

            if (indexes.Length > 0)
            {
                parameters.Add(TypedParameter.UInt(prefix + "backingIndex", indexes[0]));
            }

            var runningDisk = running.DiskByTarget(disk.TargetDev);
            var counters = runningDisk?.Statistics.Read() ?? default;
            parameters.Add(TypedParameter.ULLong(prefix + "rd.reqs", (ulong)counters.ReadOperations));
            parameters.Add(TypedParameter.ULLong(prefix + "rd.bytes", (ulong)counters.ReadBytes));
            parameters.Add(TypedParameter.ULLong(prefix + "rd.times", (ulong)counters.ReadNanoseconds));
            parameters.Add(TypedParameter.ULLong(prefix + "wr.reqs", (ulong)counters.WriteOperations));
            parameters.Add(TypedParameter.ULLong(prefix + "wr.bytes", (ulong)counters.WriteBytes));
            parameters.Add(TypedParameter.ULLong(prefix + "wr.times", (ulong)counters.WriteNanoseconds));
            parameters.Add(TypedParameter.ULLong(prefix + "fl.reqs", (ulong)counters.FlushOperations));
            parameters.Add(TypedParameter.ULLong(prefix + "fl.times", (ulong)counters.FlushNanoseconds));
            if (empty || runningDisk is null)
            {
                continue;
            }

            if (Allocated(disk.Type == Formats.Domains.DiskSourceType.Block ? null : disk.SourcePath!) is { } actual)
            {
                AddSizes(parameters, prefix, new BlockInfo(HighestWrite(runningDisk), (ulong)runningDisk.LiveImage.VirtualSize, actual));
            }

            for (var layer = 0; layer < layers[i].Count; layer++)
            {
                var (path, size) = layers[i][layer];
                prefix = "block." + record.ToString(CultureInfo.InvariantCulture) + ".";
                record++;
                parameters.Add(TypedParameter.String(prefix + "name", disk.TargetDev));
                parameters.Add(TypedParameter.String(prefix + "path", path));
                if (layer + 1 < indexes.Length)
                {
                    parameters.Add(TypedParameter.UInt(prefix + "backingIndex", indexes[layer + 1]));
                }

                // Nothing writes a backing layer: its highest write is 0.
                if (Allocated(path) is { } held)
                {
                    AddSizes(parameters, prefix, new BlockInfo(0, (ulong)size, held));
                }
            }
        }
    }

    private static void AddSizes(List<TypedParameter> parameters, string prefix, BlockInfo info)
    {
        parameters.Add(TypedParameter.ULLong(prefix + "allocation", info.Allocation));
        parameters.Add(TypedParameter.ULLong(prefix + "capacity", info.Capacity));
        parameters.Add(TypedParameter.ULLong(prefix + "physical", info.Physical));
    }

    /// <summary>
    /// The disk's sizes, or null for an image that cannot be read (removed, locked by another
    /// process): it only lacks its sizes, as libvirt leaves out what it cannot query.
    /// </summary>
    private static async Task<BlockInfo?> TryBlockInfoAsync(EngineDomain found, Formats.Domains.DomainDisk disk, string path, CancellationToken cancellationToken)
    {
        try
        {
            return await BlockInfoOfAsync(found, disk, path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException)
        {
            return null;
        }
    }

    /// <summary>What the file system holds for <paramref name="path"/> (0 for a block device, passed as null), or null when the file cannot be read.</summary>
    private static ulong? Allocated(string? path)
    {
        if (path is null)
        {
            return 0;
        }

        try
        {
            return (ulong)DiskImage.AllocatedBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public ValueTask<NodeInfo> GetNodeInfoAsync(CancellationToken cancellationToken) => Call(HostNode.Read);

    // virDomainObjCheckActive, in src/conf: error domain DOMAIN (libvirtd 9.0 says so).
    private static LibvirtError NotRunning() => LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Domain, "domain is not running");
}
