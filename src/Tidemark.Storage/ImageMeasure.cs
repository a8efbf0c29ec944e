using System.Text;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// What <c>qemu-img measure</c> reports for a new image: the bytes it needs as the source's
/// data is written into it, the bytes it needs fully allocated, and (qcow2 v3 targets of a
/// source that can hold persistent bitmaps) the bytes its copied bitmaps would take.
/// </summary>
public sealed record ImageMeasurement(ulong Required, ulong FullyAllocated, ulong? Bitmaps);

/// <summary>How the qcow2 target would be created (<c>-o</c> of qemu-img measure).</summary>
public sealed record Qcow2MeasureOptions
{
    public int ClusterSize { get; init; } = 1 << Qcow2Layout.DefaultClusterBits;

    /// <summary>2 or 3.</summary>
    public int Version { get; init; } = 3;

    public int RefcountBits { get; init; } = 16;

    public bool ExtendedL2 { get; init; }

    /// <summary>preallocation=falloc or full: every data cluster is written.</summary>
    public bool PreallocateData { get; init; }

    /// <summary>backing_file given: every cluster of the source counts as data.</summary>
    public bool HasBackingFile { get; init; }
}

/// <summary>
/// qemu-img measure's arithmetic, from QEMU 7.2's raw_measure and qcow2_measure
/// (block/qcow2.c: qcow2_calc_prealloc_size; block/qcow2-refcount.c:
/// qcow2_refcount_metadata_size; block/qcow2-bitmap.c: qcow2_get_persistent_dirty_bitmap_size).
/// </summary>
public static class ImageMeasure
{
    /// <summary>sizeof(Qcow2BitmapDirEntry): the fixed part of a bitmap directory entry.</summary>
    private const int BitmapDirectoryEntryFixedSize = 24;

    /// <summary>A raw target holds every byte: required and fully allocated are the size (in whole sectors).</summary>
    public static ImageMeasurement Raw(ulong size)
    {
        var rounded = (size + DiskSize.SectorSize - 1) & ~(ulong)(DiskSize.SectorSize - 1);
        return new ImageMeasurement(rounded, rounded, null);
    }

    /// <summary>A qcow2 target of <paramref name="size"/> bytes with no source (<c>--size</c>): only metadata is required.</summary>
    /// <exception cref="StorageException">The options are out of range, or the size needs a larger L1 table than QEMU allows.</exception>
    public static ImageMeasurement Qcow2(ulong size, Qcow2MeasureOptions options)
    {
        Check(options);
        var virtualSize = CheckedRoundUp(size, options);
        var full = FullyAllocated(virtualSize, options);
        var required = options.PreallocateData ? virtualSize : 0;
        return new ImageMeasurement(full - virtualSize + required, full, null);
    }

    /// <summary>
    /// A qcow2 target holding <paramref name="source"/>'s content: the clusters that read as
    /// data through the source's chain (zeroes and holes need none), plus metadata for the
    /// fully allocated image; bitmaps when the target is v3 and the source a qcow2 v3 image.
    /// </summary>
    /// <exception cref="StorageException">The options are out of range, or the size needs a larger L1 table than QEMU allows.</exception>
    public static async ValueTask<ImageMeasurement> Qcow2Async(IBlockImage source, Qcow2MeasureOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        Check(options);

        // QEMU checks the size option (0 here) first; the source's size is rounded unchecked.
        _ = CheckedRoundUp(0, options);
        var cs = (ulong)options.ClusterSize;
        var virtualSize = ((ulong)source.VirtualSize + cs - 1) / cs * cs;
        ulong required;
        if (options.HasBackingFile)
        {
            // The new backing file may share nothing with the source: every cluster may be written.
            required = virtualSize;
        }
        else
        {
            required = await DataClusterBytesAsync(source, options.ClusterSize, cancellationToken).ConfigureAwait(false);
        }

        if (options.PreallocateData)
        {
            required = virtualSize;
        }

        var full = FullyAllocated(virtualSize, options);
        ulong? bitmaps = options.Version >= 3 && source is Qcow2Image { Version: >= 3 } q ? BitmapsSize(q, options.ClusterSize) : null;
        return new ImageMeasurement(full - virtualSize + required, full, bitmaps);
    }

    /// <summary>Bytes of the clusters (target cluster size) that hold data through the chain, as qcow2_measure walks block status.</summary>
    private static async ValueTask<ulong> DataClusterBytesAsync(IBlockImage source, int clusterSize, CancellationToken cancellationToken)
    {
        var size = source.VirtualSize;
        var counted = 0L;
        var total = 0UL;
        var offset = 0L;
        while (offset < size)
        {
            var extents = await source.GetExtentsAsync(offset, size - offset, cancellationToken).ConfigureAwait(false);
            foreach (var extent in extents)
            {
                // Zero regions need no cluster; only data the chain allocates counts (BDRV_BLOCK_DATA | ALLOCATED).
                if (extent.Kind == ExtentKind.Data)
                {
                    var first = Math.Max(extent.Offset / clusterSize * clusterSize, counted);
                    var end = (extent.Offset + extent.Length + clusterSize - 1) / clusterSize * clusterSize;
                    if (end > first)
                    {
                        total += (ulong)(end - first);
                        counted = end;
                    }
                }

                offset = extent.Offset + extent.Length;
            }
        }

        return total;
    }

    /// <summary>qcow2_calc_prealloc_size: header, L2 tables, L1 table and refcount structures for every cluster, plus the data.</summary>
    private static ulong FullyAllocated(ulong virtualSize, Qcow2MeasureOptions options)
    {
        var cs = (ulong)options.ClusterSize;
        var l2EntrySize = options.ExtendedL2 ? 16UL : 8UL;
        var meta = cs;
        var l2Entries = virtualSize / cs;
        l2Entries = (l2Entries + (cs / l2EntrySize) - 1) / (cs / l2EntrySize) * (cs / l2EntrySize);
        meta += l2Entries * l2EntrySize;
        var l1Entries = l2Entries * l2EntrySize / cs;
        l1Entries = (l1Entries + (cs / 8) - 1) / (cs / 8) * (cs / 8);
        meta += l1Entries * 8;
        meta += RefcountMetadataSize((meta + virtualSize) / cs, cs, options.RefcountBits);
        return meta + virtualSize;
    }

    /// <summary>
    /// qcow2_refcount_metadata_size (without the generous increase): every host cluster is
    /// counted, refcount structures included, so the block and table counts are iterated to
    /// their fixed point.
    /// </summary>
    private static ulong RefcountMetadataSize(ulong clusters, ulong clusterSize, int refcountBits)
    {
        var blocksPerTableCluster = clusterSize / 8;
        var refcountsPerBlock = clusterSize * 8 / (ulong)refcountBits;
        ulong table = 0;
        ulong blocks = 0;
        ulong n = 0;
        ulong last;
        do
        {
            last = n;
            blocks = (clusters + table + blocks + refcountsPerBlock - 1) / refcountsPerBlock;
            table = (blocks + blocksPerTableCluster - 1) / blocksPerTableCluster;
            n = clusters + blocks + table;
        }
        while (n != last);

        return (blocks + table) * clusterSize;
    }

    /// <summary>qcow2_get_persistent_dirty_bitmap_size: each bitmap fully allocated, its table, and the directory.</summary>
    private static ulong BitmapsSize(Qcow2Image source, int clusterSize)
    {
        var cs = (ulong)clusterSize;
        ulong total = 0;
        ulong directory = 0;
        foreach (var bitmap in source.Bitmaps.Bitmaps.Where(b => b.Persistent))
        {
            var bits = ((ulong)source.VirtualSize + (ulong)bitmap.Granularity - 1) / (ulong)bitmap.Granularity;
            var bytes = (bits + 7) / 8;
            var clusters = (bytes + cs - 1) / cs;
            total += clusters * cs;
            total += ((clusters * 8) + cs - 1) / cs * cs;
            directory += (ulong)((BitmapDirectoryEntryFixedSize + Encoding.UTF8.GetByteCount(bitmap.Name) + 7) & ~7);
        }

        return total + ((directory + cs - 1) / cs * cs);
    }

    private static void Check(Qcow2MeasureOptions options)
    {
        var cs = options.ClusterSize;
        if (cs < 512 || cs > 2 << 20 || (cs & (cs - 1)) != 0)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Cluster size must be a power of two between 512 and 2048k");
        }

        if (options.ExtendedL2 && cs < 16384)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
        }

        var bits = options.RefcountBits;
        if (bits is <= 0 or > 64 || (bits & (bits - 1)) != 0)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Refcount width must be a power of two and may not exceed 64 bits");
        }

        if (options.Version < 3 && bits != 16)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
        }
    }

    /// <summary>The size rounded up to whole clusters, refused when its L2 tables would need an L1 table over QEMU's limit.</summary>
    private static ulong CheckedRoundUp(ulong size, Qcow2MeasureOptions options)
    {
        var cs = (ulong)options.ClusterSize;
        var clusters = (size / cs) + (size % cs == 0 ? 0UL : 1UL);
        var perTable = cs / (options.ExtendedL2 ? 16UL : 8UL);
        var l2Tables = (clusters / perTable) + (clusters % perTable == 0 ? 0UL : 1UL);
        if (l2Tables > Qcow2Layout.MaxL1Bytes / 8)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, "The image size is too large (try using a larger cluster size)");
        }

        return clusters * cs;
    }
}
