using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>Domain states (virDomainState) as GET_STATE and GET_INFO report them.</summary>
public enum DomainState
{
    NoState = 0,
    Running = 1,
    Blocked = 2,
    Paused = 3,
    Shutdown = 4,
    Shutoff = 5,
    Crashed = 6,
    PmSuspended = 7,
}

/// <summary><c>remote_domain_get_state_ret</c>: the state and the reason (a per-state enum).</summary>
public sealed record DomainStateInfo(DomainState State, int Reason)
{
    public static DomainStateInfo Read(ref XdrReader reader) => new((DomainState)reader.ReadInt32(), reader.ReadInt32());

    public void Write(XdrWriter writer)
    {
        writer.WriteInt32((int)State);
        writer.WriteInt32(Reason);
    }
}

/// <summary>
/// <c>remote_domain_get_info_ret</c>. The state is an <c>unsigned char</c> and the vCPU count an
/// <c>unsigned short</c>, each a full 4-byte XDR word on the wire. Memory is in KiB, CPU time in ns.
/// </summary>
public sealed record DomainInfo(DomainState State, ulong MaxMemoryKiB, ulong MemoryKiB, ushort VirtualCpus, ulong CpuTimeNs)
{
    public static DomainInfo Read(ref XdrReader reader)
    {
        var state = reader.ReadUInt32();
        var maxMem = reader.ReadUInt64();
        var memory = reader.ReadUInt64();
        var vcpus = reader.ReadUInt32();
        return new DomainInfo((DomainState)(byte)state, maxMem, memory, (ushort)vcpus, reader.ReadUInt64());
    }

    public void Write(XdrWriter writer)
    {
        writer.WriteUInt32((byte)State);
        writer.WriteUInt64(MaxMemoryKiB);
        writer.WriteUInt64(MemoryKiB);
        writer.WriteUInt32(VirtualCpus);
        writer.WriteUInt64(CpuTimeNs);
    }
}

/// <summary><c>remote_domain_get_block_info_ret</c>: a disk's sizes in bytes.</summary>
public sealed record BlockInfo(ulong Allocation, ulong Capacity, ulong Physical)
{
    public static BlockInfo Read(ref XdrReader reader) => new(reader.ReadUInt64(), reader.ReadUInt64(), reader.ReadUInt64());

    public void Write(XdrWriter writer)
    {
        writer.WriteUInt64(Allocation);
        writer.WriteUInt64(Capacity);
        writer.WriteUInt64(Physical);
    }
}
