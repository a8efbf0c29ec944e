namespace Tidemark.Storage.Qcow2;

/// <summary>One internal snapshot as the snapshot table describes it (formats.md §1.6).</summary>
/// <param name="Id">The unique id string ("1", "2", …).</param>
/// <param name="Name">The tag given at creation.</param>
/// <param name="L1TableOffset">Host offset of the snapshot's L1 table, as stored.</param>
/// <param name="L1Size">Entries of that table, as stored.</param>
/// <param name="VmStateSize">Bytes of saved VM state (the 64-bit extra field when present, else the 32-bit one).</param>
/// <param name="DateSeconds">Creation time, seconds since the epoch.</param>
/// <param name="DateNanoseconds">Creation time, the nanoseconds part.</param>
/// <param name="VmClockNanoseconds">Guest clock at creation.</param>
/// <param name="DiskSize">Virtual disk size when the snapshot was taken, or null when the entry has no such field (v2).</param>
/// <param name="Icount">Instruction count at creation, or null when not recorded (-1 or no field).</param>
public sealed record Qcow2Snapshot(
    string Id,
    string Name,
    long L1TableOffset,
    long L1Size,
    ulong VmStateSize,
    uint DateSeconds,
    uint DateNanoseconds,
    ulong VmClockNanoseconds,
    ulong? DiskSize,
    ulong? Icount);
