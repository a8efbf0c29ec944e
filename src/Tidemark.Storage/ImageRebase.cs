using System.Runtime.InteropServices;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>
/// Puts a qcow2 image on a new backing file (or on none), as <c>qemu-img rebase</c> does.
/// </summary>
/// <remarks>
/// Safe mode (img_rebase without -u): wherever the image does not allocate a range itself, its
/// guest reads come from the old chain; where the old and new chains differ there, the old
/// chain's bytes are written into the image (qemu-img compares 512-byte sectors, so only
/// differing sectors are written), then the header names the new backing file. At every moment
/// of the copy the image reads as before, since each write puts the bytes it already showed
/// into it; a crash before the header change leaves the old chain, after it the new one, both
/// reading the same. When the new backing file is one of the old chain's images (rebasing past
/// an intermediate layer), only ranges allocated above it can differ, and only those are read.
///
/// Durability: the copied clusters and the tables that map them are flushed before the header
/// changes (refcounts, fdatasync, L2 tables, fdatasync: Qcow2Image.Write.cs), then the header
/// is written and flushed; three fdatasyncs, flushes with nothing written since being skipped.
/// QEMU 7.2 makes two: img_rebase calls bdrv_change_backing_file straight after the copy, and
/// qcow2_update_header writes cluster 0 while the new L2 entries are still in its cache, written
/// back (after its refcounts and an fdatasync) when the image closes. A power failure between
/// the two could leave its image naming the new backing file over unmapped copies; here it
/// cannot. The copy streams its appended clusters to the disk as it goes (write-behind), so the
/// first flush has little left to wait for.
///
/// Unsafe mode (-u): only the header changes; the old chain is not opened.
/// </remarks>
public static class ImageRebase
{
    /// <summary>img_rebase's IO_BUF_SIZE: bytes compared per step; each worker's buffer holds an old-chain and a new-chain chunk.</summary>
    private const int ChunkSize = 2 << 20;

    /// <summary>
    /// Chunks read at once: one read ahead of the chunk being compared and written. img_rebase
    /// reads, compares and writes one chunk at a time; with the chain in the page cache more
    /// readers gain nothing, and each worker's buffer is fresh memory the process faults in page
    /// by page (8 workers cost ~4,000 more page faults than 2 on the bench's chain).
    /// </summary>
    private const int RequestsInFlight = 2;

    /// <summary>qemu-img's compare_buffers granularity (BDRV_SECTOR_SIZE).</summary>
    private const int SectorSize = 512;

    /// <summary>Rebases <paramref name="path"/> onto <paramref name="backingName"/>.</summary>
    /// <param name="path">The image to rebase (qcow2).</param>
    /// <param name="backingName">The new backing file as the header is to store it (relative names from the image's directory); empty for none.</param>
    /// <param name="backingFormat">The new backing file's format; required unless <paramref name="backingName"/> is empty.</param>
    /// <param name="safe">Copy what differs first (without -u).</param>
    /// <exception cref="StorageException">A raw image ("Operation not supported"), no backing format, a new backing file that is missing (safe mode) or makes a loop, or an image that cannot be opened or written. The image is unchanged, except that a failure part way through a safe copy leaves already copied ranges, which read as before.</exception>
    public static async ValueTask RebaseAsync(string path, ImageFormat? format, string backingName, ImageFormat? backingFormat, bool safe, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(backingName);
        var actual = format ?? await DiskImage.ProbeAsync(path, cancellationToken).ConfigureAwait(false);
        if (actual != ImageFormat.Qcow2)
        {
            // The raw driver has no bdrv_change_backing_file: ENOTSUP.
            throw new StorageException(StorageErrorReason.UnsupportedFeature, $"Could not change the backing file to '{backingName}': Operation not supported");
        }

        var flatten = backingName.Length == 0;
        if (!flatten && backingFormat is null)
        {
            // QEMU 7.2 refuses to record a backing file without its format (bdrv_change_backing_file with require).
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Could not change the backing file to '{backingName}': backing format must be specified");
        }

        string? backingPath = null;
        if (!flatten)
        {
            backingPath = DiskImage.ResolveBackingPath(path, backingName);
            if (File.Exists(backingPath))
            {
                await RefuseLoopAsync(path, backingName, backingPath, backingFormat, cancellationToken).ConfigureAwait(false);
            }
            else if (safe)
            {
                throw new StorageException(StorageErrorReason.BackingChain, $"Could not open new backing file '{backingName}': Could not open '{QemuBackingPath(path, backingName)}': No such file or directory");
            }
        }

        if (!safe)
        {
            var detached = await Qcow2Image.OpenDetachedAsync(path, readOnly: false, cancellationToken).ConfigureAwait(false);
            await using (detached.ConfigureAwait(false))
            {
                await detached.ChangeBackingFileAsync(flatten ? null : backingName, flatten ? null : backingFormat, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        var image = await Qcow2Image.OpenAsync(path, readOnly: false, cancellationToken).ConfigureAwait(false);
        await using (image.ConfigureAwait(false))
        {
            // The copied clusters are appended to the file and all made durable by the flush
            // before the header changes: start their writeback as they are written, so that
            // flush finds little left to write (the kernel may write any dirty page back at any
            // time; only the flushes order anything, so this changes no crash outcome).
            image.WriteBehindNewClusters();

            IBlockImage? newBacking = null;
            try
            {
                if (backingPath is not null)
                {
                    newBacking = await OpenNewBackingAsync(backingName, backingPath, backingFormat!.Value, path, cancellationToken).ConfigureAwait(false);
                }

                var prefixDepth = backingPath is null ? 0 : ChainDepthOf(image, backingPath);
                await CopyDifferencesAsync(image, newBacking, prefixDepth, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                if (newBacking is not null)
                {
                    await newBacking.DisposeAsync().ConfigureAwait(false);
                }
            }

            await image.FlushAsync(cancellationToken).ConfigureAwait(false);
            await image.ChangeBackingFileAsync(flatten ? null : backingName, flatten ? null : backingFormat, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async ValueTask<IBlockImage> OpenNewBackingAsync(string backingName, string backingPath, ImageFormat backingFormat, string path, CancellationToken cancellationToken)
    {
        try
        {
            return await DiskImage.OpenAsync(backingPath, backingFormat, readOnly: true, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new StorageException(e.Reason, $"Could not open new backing file '{backingName}': {e.Message}", e);
        }
        catch (FileNotFoundException e)
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"Could not open new backing file '{backingName}': Could not open '{QemuBackingPath(path, backingName)}': No such file or directory", e);
        }
    }

    /// <summary>A new backing file whose own chain reaches the image would make the image its own backing file.</summary>
    private static async ValueTask RefuseLoopAsync(string path, string backingName, string backingPath, ImageFormat? backingFormat, CancellationToken cancellationToken)
    {
        var real = DiskImage.RealPath(Path.GetFullPath(path));
        IReadOnlyList<BackingLayer> chain;
        try
        {
            chain = await BackingChain.ReadAsync(backingPath, backingFormat, stopAtMissing: true, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e) when (e.Reason == StorageErrorReason.BackingChain)
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"Backing file '{backingName}' creates an infinite loop.", e);
        }

        if (chain.Any(layer => DiskImage.RealPath(layer.Path) == real))
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"Backing file '{backingName}' creates an infinite loop.");
        }
    }

    /// <summary>The depth (2 for the old backing file, 3 below it...) of <paramref name="backingPath"/> in the image's old chain, or 0 when it is not in it.</summary>
    private static int ChainDepthOf(Qcow2Image image, string backingPath)
    {
        var real = DiskImage.RealPath(backingPath);
        var depth = 2;
        for (var layer = image.Backing; layer is not null; depth++)
        {
            var layerPath = DiskImage.PathOf(layer);
            if (layerPath is not null && DiskImage.RealPath(layerPath) == real)
            {
                return depth;
            }

            layer = (layer as Qcow2Image)?.Backing;
        }

        return 0;
    }

    private static async ValueTask CopyDifferencesAsync(Qcow2Image image, IBlockImage? newBacking, int prefixDepth, CancellationToken cancellationToken)
    {
        // Only the layers above the new backing file are consulted (img_rebase's
        // bdrv_is_allocated on the image, then bdrv_is_allocated_above down to the new backing
        // file): the image alone when the new backing file is not in the old chain.
        var layers = prefixDepth == 0 ? 1 : prefixDepth - 1;
        if (layers == 0)
        {
            return;
        }

        var size = image.VirtualSize;
        var chunks = new List<(long Offset, int Length)>();
        for (long at = 0; at < size;)
        {
            var extents = await image.GetExtentsAsync(at, size - at, layers, cancellationToken).ConfigureAwait(false);
            foreach (var e in extents)
            {
                at = e.End;
                if (!MayDiffer(e.Depth, prefixDepth))
                {
                    continue;
                }

                for (var offset = e.Offset; offset < e.End;)
                {
                    var n = (int)Math.Min(ChunkSize, e.End - offset);
                    chunks.Add((offset, n));
                    offset += n;
                }
            }
        }

        // Chunks are read through both chains while earlier ones are compared and written. A
        // read may come before or after a write into the same cluster (a partial cluster write
        // copies the rest from the old chain): the image reads the same either way, since every
        // write puts in the bytes it already showed.
        await OrderedChunkCopy.RunAsync(
            chunks.Count,
            2 * ChunkSize,
            async (i, buffer, token) =>
            {
                var (offset, n) = chunks[i];
                await ReadChunkAsync(image, newBacking, offset, buffer[..n], buffer.Slice(ChunkSize, n), token).ConfigureAwait(false);
            },
            async (i, buffer, token) =>
            {
                var (offset, n) = chunks[i];
                await WriteDifferencesAsync(image, offset, buffer[..n], buffer.Slice(ChunkSize, n), token).ConfigureAwait(false);
            },
            cancellationToken,
            RequestsInFlight).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether a range whose allocation, among the layers above the new backing file, is at
    /// <paramref name="depth"/> (1: the image itself, 0: none of them) can read differently
    /// through the new chain. Without a common prefix every range the image leaves to its
    /// backing file may; with one, only those an intermediate layer allocates.
    /// </summary>
    private static bool MayDiffer(int depth, int prefixDepth) => prefixDepth == 0 ? depth == 0 : depth >= 2;

    private static async ValueTask ReadChunkAsync(Qcow2Image image, IBlockImage? newBacking, long offset, Memory<byte> oldData, Memory<byte> newData, CancellationToken cancellationToken)
    {
        // The image does not allocate this range, so reading it reads the old chain.
        await image.ReadAsync(offset, oldData, cancellationToken).ConfigureAwait(false);
        // Past the new backing file's end (or with none) the new chain reads zeroes.
        var inBacking = newBacking is null ? 0 : (int)Math.Clamp(newBacking.VirtualSize - offset, 0, newData.Length);
        newData.Span[inBacking..].Clear();
        if (inBacking > 0)
        {
            await newBacking!.ReadAsync(offset, newData[..inBacking], cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Writes the old chain's bytes into the image wherever a sector reads differently through the new chain.</summary>
    private static async ValueTask WriteDifferencesAsync(Qcow2Image image, long offset, ReadOnlyMemory<byte> oldData, ReadOnlyMemory<byte> newData, CancellationToken cancellationToken)
    {
        var length = oldData.Length;
        var at = 0;
        while (at < length)
        {
            var same = SameSectors(oldData.Span[at..], newData.Span[at..]);
            if (same > 0)
            {
                at += same;
                continue;
            }

            var differ = DifferentSectors(oldData.Span[at..], newData.Span[at..]);
            var run = oldData.Slice(at, differ);
            if (!ZeroDetection.IsZero(run.Span))
            {
                await image.WriteAsync(offset + at, run, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await image.WriteZeroesAsync(offset + at, differ, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }

            at += differ;
        }
    }

    /// <summary>Bytes of leading sectors that are equal (the last sector may be short).</summary>
    private static int SameSectors(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var at = 0;
        while (at < a.Length)
        {
            var n = Math.Min(SectorSize, a.Length - at);
            if (!a.Slice(at, n).SequenceEqual(b.Slice(at, n)))
            {
                break;
            }

            at += n;
        }

        return at;
    }

    /// <summary>Bytes of leading sectors that differ.</summary>
    private static int DifferentSectors(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var at = 0;
        while (at < a.Length)
        {
            var n = Math.Min(SectorSize, a.Length - at);

            // Sectors that differ mostly differ in their first bytes: one load each settles
            // them without a call per sector (200,000 calls for the bench chain's 100 MiB).
            if (n >= sizeof(ulong) && MemoryMarshal.Read<ulong>(a[at..]) != MemoryMarshal.Read<ulong>(b[at..]))
            {
                at += n;
                continue;
            }

            if (a.Slice(at, n).SequenceEqual(b.Slice(at, n)))
            {
                break;
            }

            at += n;
        }

        return at;
    }

    /// <summary>The path qemu-img names in its messages: the name taken relative to the image's directory as given (path_combine).</summary>
    internal static string QemuBackingPath(string imagePath, string backingName)
    {
        if (backingName.StartsWith('/'))
        {
            return backingName;
        }

        var slash = imagePath.LastIndexOf('/');
        return slash < 0 ? backingName : imagePath[..(slash + 1)] + backingName;
    }
}
