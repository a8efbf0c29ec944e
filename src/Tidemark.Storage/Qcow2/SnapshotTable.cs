using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Storage.Qcow2;

/// <summary>One internal snapshot's entry: what opening, checking and listing an image need of it (formats.md §1.6).</summary>
/// <param name="Snapshot">The entry's fields, as <c>qemu-img info</c> and <c>snapshot -l</c> show them.</param>
/// <param name="ExtraDataSize">Bytes of extra data (v3 needs at least 16).</param>
internal readonly record struct SnapshotEntry(Qcow2Snapshot Snapshot, uint ExtraDataSize)
{
    /// <summary>As stored: a check still has to see that it is aligned and inside the file.</summary>
    public long L1TableOffset => Snapshot.L1TableOffset;

    /// <summary>Entries in the snapshot's L1 table, as stored.</summary>
    public uint L1Size => (uint)Snapshot.L1Size;

    public string Id => Snapshot.Id;

    public string Name => Snapshot.Name;
}

/// <summary>
/// The internal snapshot table, read as QEMU reads it at open and at the start of a check
/// (<c>qcow2_do_read_snapshots</c> without repair): entry by entry, each padded to 8 bytes, with
/// QEMU's two limits and its words when one is broken. Tidemark keeps snapshots and counts their
/// clusters and lists them; it never switches to one.
/// </summary>
internal sealed class SnapshotTable
{
    /// <summary>The fixed part of an entry: L1 offset, L1 size, id and name lengths, dates, VM state size, extra data size.</summary>
    public const int FixedEntryLength = 40;

    /// <summary>
    /// QEMU's cap on the whole table (QCOW_MAX_SNAPSHOTS_SIZE: 1 KiB for each of the 65536
    /// snapshots allowed), checked after each entry as QEMU checks it.
    /// </summary>
    public const long MaxTableBytes = 1024L * Qcow2Layout.MaxSnapshots;

    /// <summary>Extra data a v3 entry must have: the 64-bit VM state size and the disk size (qcow2_check_read_snapshot_table).</summary>
    public const int MinV3ExtraData = 16;

    private SnapshotTable(IReadOnlyList<SnapshotEntry> entries, long length)
    {
        Entries = entries;
        Length = length;
    }

    public IReadOnlyList<SnapshotEntry> Entries { get; }

    /// <summary>Bytes from <c>snapshots_offset</c> to the end of the last entry (QEMU's snapshots_size), which a check counts.</summary>
    public long Length { get; }

    /// <summary>Reads the table the header points at; an image without snapshots reads nothing.</summary>
    /// <exception cref="StorageException">
    /// <see cref="StorageErrorReason.LimitExceeded"/>: an entry has more than 1024 bytes of extra data
    /// ("Too much extra metadata in snapshot table entry N") or the table is past QEMU's 64 MiB
    /// ("Snapshot table is too big"); QEMU refuses to open such an image (EFBIG). The message does
    /// not name the file: callers say which file and which operation.
    /// </exception>
    public static async ValueTask<SnapshotTable> ReadAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        if (header.SnapshotCount == 0)
        {
            return new SnapshotTable([], 0);
        }

        var reader = new SequentialReader(file, header.SnapshotsOffset);
        var entries = new List<SnapshotEntry>();
        var length = 0L;
        for (var i = 0; i < header.SnapshotCount; i++)
        {
            length = (length + 7) & ~7L;
            var fixedPart = await reader.ReadAsync(header.SnapshotsOffset + length, FixedEntryLength, cancellationToken).ConfigureAwait(false);
            var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(fixedPart.Span);
            var l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.Span[8..]);
            var idLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.Span[12..]);
            var nameLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.Span[14..]);
            var extraLength = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.Span[36..]);
            if (extraLength > Qcow2Layout.MaxSnapshotExtraData)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"Too much extra metadata in snapshot table entry {i} (extra_data_size {extraLength}, QEMU's limit is {Qcow2Layout.MaxSnapshotExtraData})");
            }

            var dateSeconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.Span[16..]);
            var dateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.Span[20..]);
            var vmClock = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.Span[24..]);
            var vmStateSize32 = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.Span[32..]);
            var extra = (await reader.ReadAsync(header.SnapshotsOffset + length + FixedEntryLength, (int)extraLength, cancellationToken).ConfigureAwait(false)).Span;

            // QCowSnapshotExtraData: each field is there when the extra data reaches its end.
            var vmStateSize = extra.Length >= 8 ? BinaryPrimitives.ReadUInt64BigEndian(extra) : vmStateSize32;
            ulong? diskSize = extra.Length >= 16 ? BinaryPrimitives.ReadUInt64BigEndian(extra[8..]) : null;
            ulong? icount = extra.Length >= 24 ? BinaryPrimitives.ReadUInt64BigEndian(extra[16..]) : null;
            length += FixedEntryLength + extraLength;
            var id = await reader.ReadAsync(header.SnapshotsOffset + length, idLength, cancellationToken).ConfigureAwait(false);
            var name = await reader.ReadAsync(header.SnapshotsOffset + length + idLength, nameLength, cancellationToken).ConfigureAwait(false);
            length += idLength + nameLength;
            var snapshot = new Qcow2Snapshot(
                CString(id.Span), CString(name.Span), l1Offset, l1Size, vmStateSize, dateSeconds, dateNanoseconds, vmClock, diskSize, icount == ulong.MaxValue ? null : icount);
            entries.Add(new SnapshotEntry(snapshot, extraLength));
            if (length > MaxTableBytes)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"Snapshot table is too big (more than {MaxTableBytes} bytes by entry {i})");
            }
        }

        return new SnapshotTable(entries, length);
    }

    /// <summary>QEMU prints the id and name with %s: up to the first NUL.</summary>
    private static string CString(ReadOnlySpan<byte> bytes)
    {
        var end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    /// <summary>
    /// Reads the table front to back through one window, so a table of many small entries costs a
    /// few large reads, not three per entry; bytes past the end of the file read as zero, as they
    /// do for QEMU.
    /// </summary>
    private sealed class SequentialReader(HostFile file, long start)
    {
        private const int WindowBytes = 64 << 10;

        private byte[] _window = [];
        private long _windowStart = start;

        public async ValueTask<ReadOnlyMemory<byte>> ReadAsync(long offset, int count, CancellationToken cancellationToken)
        {
            if (offset < _windowStart || offset + count > _windowStart + _window.Length)
            {
                _window = new byte[Math.Max(WindowBytes, count)];
                _windowStart = offset;
                await file.ReadAsync(offset, _window, cancellationToken).ConfigureAwait(false);
            }

            return _window.AsMemory((int)(offset - _windowStart), count);
        }
    }
}
