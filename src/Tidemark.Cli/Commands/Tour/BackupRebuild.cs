using Tidemark.Nbd.Client;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Tour;

/// <summary>
/// A disk rebuilt from its backups with Tidemark's own readers: the full backup's image read
/// whole, then each incremental laid over it — a push incremental's allocated clusters (its
/// target holds only what changed, over the disk as its backing file, so it is read once the
/// domain has let go of the disk), a pull incremental's dirty extents as read over NBD.
/// </summary>
internal sealed class BackupRebuild(byte[] disk)
{
    /// <summary>The rebuilt disk's bytes.</summary>
    public byte[] Disk { get; } = disk;

    /// <summary>Starts from a full backup image.</summary>
    public static async Task<BackupRebuild> FromFullAsync(string image, CancellationToken cancellationToken)
    {
        var source = await DiskImage.OpenAsync(image, ImageFormat.Qcow2, readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (source.ConfigureAwait(false))
        {
            var disk = new byte[source.VirtualSize];
            const int Chunk = 4 << 20;
            for (long offset = 0; offset < disk.Length; offset += Chunk)
            {
                await source.ReadAsync(offset, disk.AsMemory((int)offset, (int)Math.Min(Chunk, disk.Length - offset)), cancellationToken).ConfigureAwait(false);
            }

            return new BackupRebuild(disk);
        }
    }

    /// <summary>Lays a push incremental's allocated clusters over the disk; returns the bytes taken.</summary>
    public async Task<long> ApplyPushIncrementalAsync(string image, CancellationToken cancellationToken)
    {
        var source = await DiskImage.OpenAsync(image, ImageFormat.Qcow2, readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (source.ConfigureAwait(false))
        {
            long taken = 0;
            for (long offset = 0; offset < source.VirtualSize;)
            {
                var extents = await source.GetExtentsAsync(offset, source.VirtualSize - offset, cancellationToken).ConfigureAwait(false);
                foreach (var extent in extents)
                {
                    // Only the target's own clusters: the rest reads through to its backing file, the live disk.
                    if (extent.Depth == 1)
                    {
                        await source.ReadAsync(extent.Offset, Disk.AsMemory((int)extent.Offset, (int)extent.Length), cancellationToken).ConfigureAwait(false);
                        taken += extent.Length;
                    }

                    offset = extent.End;
                }
            }

            return taken;
        }
    }

    /// <summary>
    /// Reads a pull backup's export where its dirty bitmap context says the disk changed since
    /// the incremental's checkpoint: the changed ranges and their bytes.
    /// </summary>
    public static async Task<IReadOnlyList<(long Offset, byte[] Data)>> ReadPullIncrementalAsync(NbdClient export, string bitmapContext, CancellationToken cancellationToken)
    {
        var changed = new List<(long, byte[])>();
        for (long offset = 0; offset < export.Size;)
        {
            var length = (uint)Math.Min(export.Size - offset, 1L << 30);
            var status = await export.BlockStatusAsync(offset, length, cancellationToken: cancellationToken).ConfigureAwait(false);
            foreach (var extent in status[bitmapContext])
            {
                // NBD_STATE_DIRTY (bit 0 of a qemu:dirty-bitmap context).
                if ((extent.Flags & 1) != 0)
                {
                    var data = new byte[extent.Length];
                    var chunk = (int)Math.Min(extent.Length, export.MaximumBlockSize);
                    for (var done = 0; done < data.Length; done += chunk)
                    {
                        await export.ReadAsync(offset + done, data.AsMemory(done, Math.Min(chunk, data.Length - done)), cancellationToken: cancellationToken).ConfigureAwait(false);
                    }

                    changed.Add((offset, data));
                }

                offset += extent.Length;
            }
        }

        return changed;
    }

    /// <summary>Lays a pull incremental's changed ranges over the disk.</summary>
    public void Apply(IReadOnlyList<(long Offset, byte[] Data)> changed)
    {
        foreach (var (offset, data) in changed)
        {
            data.CopyTo(Disk.AsSpan((int)offset));
        }
    }

    /// <summary>The first offset where the rebuilt disk and <paramref name="expected"/> differ, or null when identical.</summary>
    public long? FirstDifference(byte[] expected)
    {
        if (expected.Length != Disk.Length)
        {
            return Math.Min(expected.Length, Disk.Length);
        }

        var at = Disk.AsSpan().CommonPrefixLength(expected);
        return at == Disk.Length ? null : at;
    }
}
