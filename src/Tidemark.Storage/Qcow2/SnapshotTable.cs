using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Storage.Qcow2;

/// <summary>One internal snapshot as the snapshot table describes it (formats.md §1.6).</summary>
/// <param name="Id">The unique id string ("1", "2", …).</param>
/// <param name="Name">The tag given at creation.</param>
/// <param name="L1TableOffset">Host offset of the snapshot's L1 table.</param>
/// <param name="L1Size">Entries of that table.</param>
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
    int L1Size,
    ulong VmStateSize,
    uint DateSeconds,
    uint DateNanoseconds,
    ulong VmClockNanoseconds,
    ulong? DiskSize,
    ulong? Icount);

/// <summary>
/// Reads the snapshot table (formats.md §1.6; QEMU's qcow2_read_snapshots), checking each
/// entry before it is trusted: the table stays inside the file and under QEMU's 64 MiB cap,
/// the extra data under 1024 bytes and (v3) at least 16, the L1 table aligned and under 32 MiB.
/// </summary>
internal static class SnapshotTable
{
    /// <summary>QCOW_MAX_SNAPSHOTS_SIZE: QEMU refuses a snapshot table larger than 64 MiB.</summary>
    private const long MaxTableBytes = 1024L * Qcow2Layout.MaxSnapshots;

    /// <summary>The fixed part of an entry: L1 offset, L1 size, id and name sizes, date, clock, vm state size, extra size.</summary>
    private const int FixedSize = 40;

    // Extra data fields (formats.md §1.6): each present when the extra data is long enough.
    private const int ExtraVmStateSizeEnd = 8;
    private const int ExtraDiskSizeEnd = 16;
    private const int ExtraIcountEnd = 24;

    /// <exception cref="StorageException"><see cref="StorageErrorReason.Corrupt"/> or <see cref="StorageErrorReason.LimitExceeded"/>: an entry breaks the format; the message names it and its offset.</exception>
    public static async ValueTask<IReadOnlyList<Qcow2Snapshot>> ReadAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        var snapshots = new List<Qcow2Snapshot>(header.SnapshotCount);
        var at = header.SnapshotsOffset;
        var fileLength = file.Length;
        var fixedPart = new byte[FixedSize];
        for (var i = 0; i < header.SnapshotCount; i++)
        {
            // An entry is padded to 8 bytes (QEMU aligns each one).
            at = (at + 7) & ~7L;
            Need(file, at, FixedSize, fileLength, header.SnapshotsOffset, i);
            await file.ReadAsync(at, fixedPart, cancellationToken).ConfigureAwait(false);
            var f = fixedPart.AsSpan();
            var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(f);
            var l1Size = BinaryPrimitives.ReadUInt32BigEndian(f[8..]);
            var idSize = BinaryPrimitives.ReadUInt16BigEndian(f[12..]);
            var nameSize = BinaryPrimitives.ReadUInt16BigEndian(f[14..]);
            var dateSeconds = BinaryPrimitives.ReadUInt32BigEndian(f[16..]);
            var dateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(f[20..]);
            var vmClock = BinaryPrimitives.ReadUInt64BigEndian(f[24..]);
            var vmStateSize32 = BinaryPrimitives.ReadUInt32BigEndian(f[32..]);
            var extraSize = BinaryPrimitives.ReadUInt32BigEndian(f[36..]);
            if (extraSize > Qcow2Layout.MaxSnapshotExtraData)
            {
                throw Bad(StorageErrorReason.LimitExceeded, file, at, i, $"Too much extra metadata in snapshot table entry {i} ({extraSize} bytes, QEMU's limit is {Qcow2Layout.MaxSnapshotExtraData})");
            }

            if (header.Version >= 3 && extraSize < ExtraDiskSizeEnd)
            {
                throw Bad(StorageErrorReason.Corrupt, file, at, i, $"Snapshot table entry {i} is incomplete ({extraSize} bytes of extra data, version 3 needs 16)");
            }

            if ((l1Offset & (header.ClusterSize - 1)) != 0 || l1Offset < header.ClusterSize || (ulong)l1Size * 8 > Qcow2Layout.MaxL1Bytes || l1Offset > fileLength)
            {
                throw Bad(StorageErrorReason.Corrupt, file, at, i, $"Snapshot L1 table offset 0x{l1Offset:x} or size {l1Size} is invalid");
            }

            var variable = new byte[extraSize + idSize + nameSize];
            Need(file, at + FixedSize, variable.Length, fileLength, header.SnapshotsOffset, i);
            await file.ReadAsync(at + FixedSize, variable, cancellationToken).ConfigureAwait(false);
            var extra = variable.AsSpan(0, (int)extraSize);
            var vmStateSize = extra.Length >= ExtraVmStateSizeEnd ? BinaryPrimitives.ReadUInt64BigEndian(extra) : vmStateSize32;
            ulong? diskSize = extra.Length >= ExtraDiskSizeEnd ? BinaryPrimitives.ReadUInt64BigEndian(extra[ExtraVmStateSizeEnd..]) : null;
            ulong? icount = extra.Length >= ExtraIcountEnd ? BinaryPrimitives.ReadUInt64BigEndian(extra[ExtraDiskSizeEnd..]) : null;
            var id = Text(variable.AsSpan((int)extraSize, idSize));
            var name = Text(variable.AsSpan((int)extraSize + idSize, nameSize));
            snapshots.Add(new Qcow2Snapshot(id, name, l1Offset, (int)l1Size, vmStateSize, dateSeconds, dateNanoseconds, vmClock, diskSize, icount == ulong.MaxValue ? null : icount));
            at += FixedSize + variable.Length;
        }

        return snapshots;
    }

    /// <summary>QEMU keeps ids and names as C strings: a NUL ends them early.</summary>
    private static string Text(ReadOnlySpan<byte> bytes)
    {
        var nul = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? bytes : bytes[..nul]);
    }

    private static void Need(HostFile file, long at, long length, long fileLength, long tableStart, int index)
    {
        if (at - tableStart + length > MaxTableBytes)
        {
            throw Bad(StorageErrorReason.LimitExceeded, file, at, index, "Snapshot table is too big");
        }

        if (at + length > fileLength)
        {
            throw Bad(StorageErrorReason.Corrupt, file, at, index, $"snapshot table entry {index} ends past the end of the file ({fileLength} bytes)");
        }
    }

    private static StorageException Bad(StorageErrorReason reason, HostFile file, long at, int index, string what)
        => new(reason, $"{file.Path}: {what} (entry {index} at offset {at})");
}
