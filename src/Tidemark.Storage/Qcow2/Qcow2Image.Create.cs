using System.Buffers.Binary;
using System.Numerics;

namespace Tidemark.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// Creates an empty image laid out as <c>qemu-img create</c> 7.2 does (formats.md §1.4):
    /// header, refcount table, refcount block(s), L1 table, and the file ends right after the
    /// L1 table's last entry (a block device keeps its size). Returns it open read-write.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.InvalidRequest"/>: an option is out of range; the message names it.</exception>
    public static ValueTask<Qcow2Image> CreateAsync(string path, Qcow2CreateOptions options, CancellationToken cancellationToken = default)
        => CreateAsync(path, options, openBackingChain: true, cancellationToken);

    /// <summary>
    /// Creates the image as <see cref="CreateAsync(string, Qcow2CreateOptions, CancellationToken)"/>
    /// does, but returns it open without its backing chain even when the header names one:
    /// unallocated clusters then read as zeroes, also where a partly written cluster is filled
    /// by copy-on-write. For a writer that fills whole clusters of an image whose backing file
    /// is open read-write elsewhere in this process, where a second open would conflict with
    /// that file's lock: a push backup's incremental target names the live disk as its
    /// backing file, as libvirt writes it, while the live disk is in use.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.InvalidRequest"/>: an option is out of range; the message names it.</exception>
    public static ValueTask<Qcow2Image> CreateDetachedAsync(string path, Qcow2CreateOptions options, CancellationToken cancellationToken = default)
        => CreateAsync(path, options, openBackingChain: false, cancellationToken);

    private static async ValueTask<Qcow2Image> CreateAsync(string path, Qcow2CreateOptions options, bool openBackingChain, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        var header = BuildHeader(options);
        var clusterSize = header.ClusterSize;
        var entriesPerBlock = (long)clusterSize * 8 / header.RefcountBits;
        var l1Clusters = Math.Max(1, (header.L1Size * 8L + clusterSize - 1) / clusterSize);

        // Table and blocks must count the header, themselves and the L1 table.
        long tableClusters = 1, blocks = 1;
        while (true)
        {
            var total = 1 + tableClusters + blocks + l1Clusters;
            var needBlocks = (total + entriesPerBlock - 1) / entriesPerBlock;
            var needTable = Math.Max(1, ((needBlocks * 8) + clusterSize - 1) / clusterSize);
            if (needBlocks == blocks && needTable == tableClusters)
            {
                break;
            }

            (blocks, tableClusters) = (needBlocks, needTable);
        }

        var tableOffset = (long)clusterSize;
        var blocksOffset = tableOffset + (tableClusters * clusterSize);
        var l1Offset = blocksOffset + (blocks * clusterSize);
        header = header with { RefcountTableOffset = tableOffset, RefcountTableClusters = (int)tableClusters, L1TableOffset = l1Offset };
        var used = 1 + tableClusters + blocks + l1Clusters;

        var table = new byte[tableClusters * clusterSize];
        for (var b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(b * 8)), (ulong)(blocksOffset + (b * clusterSize)));
        }

        var refcountBlocks = new byte[blocks * clusterSize];
        for (var b = 0L; b < blocks; b++)
        {
            var block = new RefcountBlock(0, new byte[clusterSize], header.RefcountOrder);
            for (var c = b * entriesPerBlock; c < Math.Min(used, (b + 1) * entriesPerBlock); c++)
            {
                block[(int)(c - (b * entriesPerBlock))] = 1;
            }

            block.Data.CopyTo(refcountBlocks.AsSpan((int)(b * clusterSize)));
        }

        var file = HostFile.Create(path);
        await using (file.ConfigureAwait(false))
        {
            await file.WriteAsync(0, header.Serialize(), cancellationToken).ConfigureAwait(false);
            await file.WriteAsync(tableOffset, table, cancellationToken).ConfigureAwait(false);
            await file.WriteAsync(blocksOffset, refcountBlocks, cancellationToken).ConfigureAwait(false);
            if (file.IsBlockDevice)
            {
                // A new file reads as zeroes past what was written; a block device holds what
                // was on it before, so the empty L1 table is written out, as QEMU's
                // qcow2_co_create writes it with zeroes.
                await file.WriteAsync(l1Offset, new byte[l1Clusters * clusterSize], cancellationToken).ConfigureAwait(false);
            }

            file.SetLength(l1Offset + (header.L1Size * 8L));
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        return await OpenAsync(path, readOnly: false, openBackingChain ? Array.Empty<string>() : null, stated: null, cancellationToken).ConfigureAwait(false);
    }

    private static Qcow2Header BuildHeader(Qcow2CreateOptions options)
    {
        if (options.Size < 0 || options.Size > Qcow2Layout.MaxVirtualSize)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Invalid image size {options.Size}: must be between 0 and {Qcow2Layout.MaxVirtualSize} bytes");
        }

        if (!BitOperations.IsPow2(options.ClusterSize) || options.ClusterSize < (1 << Qcow2Layout.MinClusterBits) || options.ClusterSize > (1 << Qcow2Layout.MaxClusterBits))
        {
            // qemu-img's exact words; the value is left out as QEMU leaves it out (the option
            // parser caps what it passes on, so it could only misquote a huge value).
            throw new StorageException(StorageErrorReason.InvalidRequest, "Cluster size must be a power of two between 512 and 2048k");
        }

        if (options.Version is not (2 or 3))
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Invalid compat version {options.Version} (2 for 0.10, 3 for 1.1)");
        }

        if (!BitOperations.IsPow2(options.RefcountBits) || options.RefcountBits > 64 || (options.Version == 2 && options.RefcountBits != 16))
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Refcount width {options.RefcountBits} is invalid (a power of two up to 64; version 2 images need 16)");
        }

        if (options.Zstd && options.Version == 2)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Compression type zstd needs a version 3 image");
        }

        if (options.BackingFormat is not null && options.BackingFile is null)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "A backing format needs a backing file");
        }

        var size = DiskSize.RoundUp(options.Size);
        var clusterBits = BitOperations.Log2((uint)options.ClusterSize);
        var l1Size = Qcow2Header.RequiredL1Entries(size, clusterBits, options.ClusterSize / 8);
        if (l1Size * 8 > Qcow2Layout.MaxL1Bytes)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Image size {options.Size} is too large for cluster size {options.ClusterSize} (the L1 table would exceed 32 MiB)");
        }

        var header = new Qcow2Header
        {
            Version = options.Version,
            ClusterBits = clusterBits,
            Size = size,
            L1Size = (int)l1Size,
            L1TableOffset = 0,
            RefcountTableOffset = 0,
            RefcountTableClusters = 1,
            RefcountOrder = BitOperations.Log2((uint)options.RefcountBits),
            HeaderLength = options.Version == 3 ? Qcow2Layout.V3HeaderLength : Qcow2Layout.V2HeaderLength,
            IncompatibleFeatures = options.Zstd ? Qcow2Layout.IncompatCompression : 0,
            CompressionType = options.Zstd ? Qcow2Layout.CompressionZstd : Qcow2Layout.CompressionDeflate,
            BackingFile = options.BackingFile,
            BackingFormat = options.BackingFormat?.ToName(),
        };

        // QEMU writes its feature name table into every v3 image; leave it out only when it
        // would not fit next to the backing file name in a small cluster.
        if (options.Version == 3)
        {
            var withTable = header.WithExtension(Qcow2Layout.ExtensionFeatureTable, Qcow2FeatureTable.Build());
            try
            {
                _ = withTable.Serialize();
                header = withTable;
            }
            catch (StorageException)
            {
                // Too long for cluster 0 with the backing name: QEMU only needs the table to name unknown bits.
            }
        }

        _ = header.Serialize();
        return header;
    }
}
