using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>
/// A disk's I/O counters as libvirt's QEMU driver reports them (QEMU's block accounting): the
/// fixed <c>remote_domain_block_stats_ret</c> of DOMAIN_BLOCK_STATS and the typed parameters of
/// DOMAIN_BLOCK_STATS_FLAGS. Times are nanoseconds.
/// </summary>
public sealed record BlockStats(long ReadRequests, long ReadBytes, long WriteRequests, long WriteBytes, long FlushRequests, long ReadNanoseconds, long WriteNanoseconds, long FlushNanoseconds)
{
    /// <summary>
    /// <c>remote_domain_block_stats_ret</c>: rd_req, rd_bytes, wr_req, wr_bytes, errs; QEMU has
    /// no error count, which libvirt sends as -1.
    /// </summary>
    public void Write(XdrWriter writer)
    {
        writer.WriteInt64(ReadRequests);
        writer.WriteInt64(ReadBytes);
        writer.WriteInt64(WriteRequests);
        writer.WriteInt64(WriteBytes);
        writer.WriteInt64(-1);
    }

    /// <summary>The typed parameters, all LLONG, in the order qemuDomainBlockStatsFlags fills them.</summary>
    public IReadOnlyList<TypedParameter> ToParameters() =>
    [
        TypedParameter.LLong("wr_bytes", WriteBytes),
        TypedParameter.LLong("wr_operations", WriteRequests),
        TypedParameter.LLong("rd_bytes", ReadBytes),
        TypedParameter.LLong("rd_operations", ReadRequests),
        TypedParameter.LLong("flush_operations", FlushRequests),
        TypedParameter.LLong("wr_total_times", WriteNanoseconds),
        TypedParameter.LLong("rd_total_times", ReadNanoseconds),
        TypedParameter.LLong("flush_total_times", FlushNanoseconds),
    ];
}

/// <summary>virDomainDiskErrorCode.</summary>
public enum DiskErrorCode
{
    None = 0,
    Unspecified = 1,
    NoSpace = 2,
}

/// <summary><c>remote_domain_disk_error</c>: a disk (target dev) and its last I/O error.</summary>
public sealed record DiskError(string Disk, DiskErrorCode Error)
{
    public void Write(XdrWriter writer)
    {
        writer.WriteString(Disk, RemoteWire.MaxStringLength);
        writer.WriteInt32((int)Error);
    }
}

/// <summary><c>remote_domain_stats_record</c>: one domain's statistics (CONNECT_GET_ALL_DOMAIN_STATS).</summary>
public sealed record DomainStatsRecord(RemoteDomain Domain, IReadOnlyList<TypedParameter> Parameters)
{
    public void Write(XdrWriter writer)
    {
        Domain.Write(writer);
        TypedParameter.WriteList(writer, Parameters, RemoteWire.MaxDomainStatsParams, "domain stats");
    }
}

/// <summary>
/// <c>remote_node_get_info_ret</c> (virNodeInfo). <c>char model[32]</c> is an XDR fixed array of
/// chars, each char a full 4-byte word (rpcgen's xdr_vector of xdr_char), NUL-padded.
/// </summary>
public sealed record NodeInfo(string Model, ulong MemoryKiB, int Cpus, int Mhz, int Nodes, int Sockets, int Cores, int Threads)
{
    private const int ModelLength = 32;

    public static NodeInfo Read(ref XdrReader reader)
    {
        var model = new char[ModelLength];
        for (var i = 0; i < ModelLength; i++)
        {
            model[i] = (char)(byte)reader.ReadInt32();
        }

        return new NodeInfo(new string(model).TrimEnd('\0'), reader.ReadUInt64(), reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32());
    }

    public void Write(XdrWriter writer)
    {
        // virNodeInfo's model is a C string in 32 bytes: at most 31 characters and a NUL.
        for (var i = 0; i < ModelLength; i++)
        {
            writer.WriteInt32(i < Math.Min(Model.Length, ModelLength - 1) ? (byte)Model[i] : 0);
        }

        writer.WriteUInt64(MemoryKiB);
        writer.WriteInt32(Cpus);
        writer.WriteInt32(Mhz);
        writer.WriteInt32(Nodes);
        writer.WriteInt32(Sockets);
        writer.WriteInt32(Cores);
        writer.WriteInt32(Threads);
    }
}
