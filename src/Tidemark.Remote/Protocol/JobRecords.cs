using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>virDomainJobType: the <c>type</c> of GET_JOB_INFO and GET_JOB_STATS.</summary>
public enum DomainJobType
{
    None = 0,
    Bounded = 1,
    Unbounded = 2,
    Completed = 3,
    Failed = 4,
    Cancelled = 5,
}

/// <summary>virDomainBlockJobType: <c>type</c> of GET_BLOCK_JOB_INFO.</summary>
public enum BlockJobType
{
    Unknown = 0,
    Pull = 1,
    Copy = 2,
    Commit = 3,
    ActiveCommit = 4,

    /// <summary>virtnbdbackup refuses to start while a disk reports this.</summary>
    Backup = 5,
}

/// <summary>
/// <c>remote_domain_get_job_info_ret</c> (the older, fixed-field job query virsh falls back to):
/// times in ms, sizes in bytes.
/// </summary>
public sealed record JobInfo(
    DomainJobType Type,
    ulong TimeElapsed,
    ulong TimeRemaining,
    ulong DataTotal,
    ulong DataProcessed,
    ulong DataRemaining,
    ulong MemTotal,
    ulong MemProcessed,
    ulong MemRemaining,
    ulong FileTotal,
    ulong FileProcessed,
    ulong FileRemaining)
{
    /// <summary>No job.</summary>
    public static JobInfo None { get; } = new(DomainJobType.None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    public static JobInfo Read(ref XdrReader reader) => new(
        (DomainJobType)reader.ReadInt32(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64(),
        reader.ReadUInt64());

    public void Write(XdrWriter writer)
    {
        writer.WriteInt32((int)Type);
        foreach (var value in (ReadOnlySpan<ulong>)[TimeElapsed, TimeRemaining, DataTotal, DataProcessed, DataRemaining, MemTotal, MemProcessed, MemRemaining, FileTotal, FileProcessed, FileRemaining])
        {
            writer.WriteUInt64(value);
        }
    }
}

/// <summary><c>remote_domain_get_job_stats_ret</c>: the job type and its statistics (§5: operation, time_elapsed, disk_*, success, errmsg).</summary>
public sealed record JobStats(DomainJobType Type, IReadOnlyList<TypedParameter> Parameters)
{
    /// <summary>No job.</summary>
    public static JobStats None { get; } = new(DomainJobType.None, []);

    public static JobStats Read(ref XdrReader reader)
    {
        var type = (DomainJobType)reader.ReadInt32();
        return new JobStats(type, TypedParameter.ReadList(ref reader, RemoteWire.MaxJobStats, "job statistics"));
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteInt32((int)Type);
        TypedParameter.WriteList(writer, Parameters, RemoteWire.MaxJobStats, "job statistics");
    }
}

/// <summary>
/// <c>remote_domain_get_block_job_info_ret</c> when a job runs on the disk; the wire's
/// <c>found</c> word is 0 and the rest zero when there is none (null here).
/// </summary>
public sealed record BlockJobInfo(BlockJobType Type, ulong Bandwidth, ulong Cur, ulong End)
{
    public static BlockJobInfo? Read(ref XdrReader reader)
    {
        var found = reader.ReadInt32();
        var info = new BlockJobInfo((BlockJobType)reader.ReadInt32(), reader.ReadUInt64(), reader.ReadUInt64(), reader.ReadUInt64());
        return found != 0 ? info : null;
    }

    public static void Write(XdrWriter writer, BlockJobInfo? info)
    {
        writer.WriteInt32(info is null ? 0 : 1);
        writer.WriteInt32((int)(info?.Type ?? BlockJobType.Unknown));
        writer.WriteUInt64(info?.Bandwidth ?? 0);
        writer.WriteUInt64(info?.Cur ?? 0);
        writer.WriteUInt64(info?.End ?? 0);
    }
}
