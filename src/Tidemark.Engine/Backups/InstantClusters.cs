using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// The clusters a job has to take care of, fixed at its instant: the allocated ones (a full
/// backup; also every pull, whose view must show the whole disk as it was) or an incremental
/// backup's dirty ones, at the job's copy granularity.
/// </summary>
internal static class InstantClusters
{
    /// <summary>The finest pull copy granularity: the usual guest block size.</summary>
    public const long MinViewGranularity = 4096;

    /// <summary>Bits per pull bitmap at most: 8 MiB of memory each, 4 KiB granularity up to 256 GiB.</summary>
    public const long MaxViewBits = 1L << 26;

    /// <summary>
    /// A push job's copy granularity: 64 KiB (QEMU's block-copy default), or coarser when the store's
    /// cluster or the incremental bitmap's granularity is (block_copy_calculate_cluster_size):
    /// the store then only ever takes whole clusters, never a copy-on-write of a partial one.
    /// </summary>
    public static long Granularity(int storeCluster, DirtyBitmap? incremental)
        => Math.Max(Math.Max(64 * 1024, storeCluster), incremental?.Granularity ?? 0);

    /// <summary>
    /// A pull job's copy granularity: 4 KiB, the guest's own block, so that a small guest write
    /// copies only what it overwrites. QEMU's fleecing copies whole 64 KiB clusters (its
    /// block-copy default); a 4 KiB random write then drags 64 KiB into the scratch, 16 times
    /// the guest's own bytes. The scratch is private to the job, so nothing else needs whole
    /// clusters: a partial write into a fresh scratch cluster leaves the rest a hole. Coarser
    /// only on disks so large that the job's bitmaps (pending, copied, and the view's allocated and
    /// zero-data ones) would pass <see cref="MaxViewBits"/> bits each.
    /// </summary>
    public static long ViewGranularity(long size)
    {
        var granularity = MinViewGranularity;
        while ((size + granularity - 1) / granularity > MaxViewBits)
        {
            granularity *= 2;
        }

        return granularity;
    }

    /// <summary>Every cluster of a disk of <paramref name="size"/> bytes.</summary>
    public static DirtyBitmap All(long size, long granularity)
    {
        var clusters = new DirtyBitmap(Math.Max(1, size), granularity);
        clusters.SetRange(0, size);
        return clusters;
    }

    /// <summary>The clusters of <paramref name="image"/> that do not read as zeroes, from its allocation map.</summary>
    /// <param name="zeroData">
    /// When given, also marked: the clusters that read as zeroes but are not holes (a qcow2 data
    /// cluster over a hole of its file, as QEMU reports it for a metadata-preallocated image),
    /// which a pull's view reports as zero and allocated (base:allocation 2), not as a hole (3).
    /// </param>
    public static async ValueTask<DirtyBitmap> AllocatedAsync(IBlockImage image, long granularity, CancellationToken cancellationToken, DirtyBitmap? zeroData = null)
    {
        var clusters = new DirtyBitmap(Math.Max(1, image.VirtualSize), granularity);
        for (var position = 0L; position < image.VirtualSize;)
        {
            var extents = await image.GetExtentsAsync(position, image.VirtualSize - position, cancellationToken).ConfigureAwait(false);
            foreach (var extent in extents)
            {
                if ((extent.Kind & ExtentKind.Zero) == 0)
                {
                    clusters.SetRange(extent.Offset, extent.Length);
                }
                else if (extent.Kind == ExtentKind.Zero)
                {
                    zeroData?.SetRange(extent.Offset, extent.Length);
                }

                position = extent.End;
            }
        }

        return clusters;
    }

    /// <summary><paramref name="dirty"/> at <paramref name="granularity"/>: a cluster is the job's when any of its bytes is dirty.</summary>
    public static DirtyBitmap Dirty(DirtyBitmap dirty, long size, long granularity)
    {
        if (dirty.Size != size)
        {
            throw new ArgumentException($"the incremental bitmap covers {dirty.Size} bytes, the disk {size}", nameof(dirty));
        }

        var clusters = new DirtyBitmap(size, granularity);
        clusters.Merge(dirty);
        return clusters;
    }
}
