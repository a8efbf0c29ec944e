using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Backup.Run;

/// <summary>
/// What a pull export says must be copied, from NBD block status (formats.md §4): a full takes
/// the <c>base:allocation</c> extents without NBD_STATE_ZERO; an incremental takes the extents
/// of <c>qemu:dirty-bitmap:backup-DISK</c> (NBD_STATE_DIRTY), split by allocation into data to
/// copy and zeroes to write over the older chain (trimmed areas stay small).
/// </summary>
internal sealed class ExportMap
{
    public const string AllocationContext = "base:allocation";

    // base:allocation flags (NBD protocol "base:allocation metadata context").
    private const uint StateZero = 2;

    // qemu:dirty-bitmap:NAME flags: bit 0 set = dirty.
    private const uint StateDirty = 1;

    // One block status request at most; the server may answer for less.
    private const uint MaxStatusLength = 1u << 30;

    private ExportMap(List<ByteRange> data, List<ByteRange> zero)
    {
        Data = data;
        Zero = zero;
    }

    /// <summary>Ranges to read and copy, sorted and disjoint.</summary>
    public IReadOnlyList<ByteRange> Data { get; }

    /// <summary>Ranges to write as zeroes (incremental only), sorted, disjoint and apart from <see cref="Data"/>.</summary>
    public IReadOnlyList<ByteRange> Zero { get; }

    /// <summary>The context an incremental export offers for disk <paramref name="disk"/> (libvirt's default export bitmap).</summary>
    public static string DirtyBitmapContext(string disk) => "qemu:dirty-bitmap:backup-" + disk;

    /// <summary>
    /// Reads the map of <paramref name="client"/>'s export and aligns it to
    /// <paramref name="alignment"/> (the target's cluster size): data widens to whole clusters
    /// (reading a little more of the point-in-time export is always right), zeroes keep only
    /// whole clusters and give their partial edges to data.
    /// </summary>
    public static async Task<ExportMap> ReadAsync(NbdClient client, string? dirtyContext, long alignment, CancellationToken cancellationToken)
    {
        var size = client.Size;
        var data = new List<ByteRange>();
        var zero = new List<ByteRange>();
        for (long offset = 0; offset < size;)
        {
            var length = (uint)Math.Min(MaxStatusLength, size - offset);
            var status = await client.BlockStatusAsync(offset, length, NbdCommandFlags.None, cancellationToken).ConfigureAwait(false);
            var allocation = Ranges(status, AllocationContext, offset);
            var dirty = dirtyContext is null ? null : Ranges(status, dirtyContext, offset);
            var end = Math.Min(allocation[^1].Range.End, dirty?[^1].Range.End ?? long.MaxValue);
            end = Math.Min(end, size);
            foreach (var (range, flags) in allocation)
            {
                var clipped = new ByteRange(range.Start, Math.Min(range.End, end));
                var target = (flags & StateZero) == 0 ? data : zero;
                if (dirty is null)
                {
                    target.Add(clipped);
                    continue;
                }

                foreach (var (d, dirtyFlags) in dirty)
                {
                    if ((dirtyFlags & StateDirty) != 0 && d.Start < clipped.End && d.End > clipped.Start)
                    {
                        target.Add(new ByteRange(Math.Max(d.Start, clipped.Start), Math.Min(d.End, clipped.End)));
                    }
                }
            }

            offset = end;
        }

        var aligned = ByteRange.Merge(data.Select(r => r.AlignOut(alignment, size)));
        var wholeZero = ByteRange.Merge(zero.Select(r => r.AlignIn(alignment, size)));
        var edges = ByteRange.Subtract(ByteRange.Merge(zero), wholeZero).Select(r => r.AlignOut(alignment, size));
        var finalData = ByteRange.Merge(aligned.Concat(edges));
        return new ExportMap(finalData, ByteRange.Subtract(wholeZero, finalData));
    }

    private static List<(ByteRange Range, uint Flags)> Ranges(IReadOnlyDictionary<string, IReadOnlyList<NbdBlockExtent>> status, string context, long offset)
    {
        if (!status.TryGetValue(context, out var extents) || extents.Count == 0)
        {
            throw new BackupException(BackupErrorReason.HostFailed, $"the export sent no extents for meta context '{context}' at offset {offset}");
        }

        var result = new List<(ByteRange, uint)>(extents.Count);
        var at = offset;
        foreach (var e in extents)
        {
            result.Add((new ByteRange(at, at + e.Length), e.Flags));
            at += e.Length;
        }

        return result;
    }
}
