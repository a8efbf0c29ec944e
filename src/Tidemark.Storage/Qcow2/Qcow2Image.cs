using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// A qcow2 image (formats.md §1), with its backing chain, as an <see cref="IBlockImage"/>. This
/// file holds open, close and the cluster-space contract used by persistent bitmaps; reads live
/// in <c>Qcow2Image.Read.cs</c>, writes and the crash-safe write-back order in
/// <c>Qcow2Image.Write.cs</c>.
/// </summary>
/// <remarks>
/// <para>Locking: one metadata lock (<see cref="_lock"/>) serialises every operation that
/// consults or changes the L1/L2 tables, refcounts or the header. Persistent-bitmap calls made
/// from the bitmap code go through <see cref="IQcow2ClusterSpace"/>, whose members take the
/// same lock, so the open and close seams call the bitmap code without holding it.</para>
/// <para>Guest data moves outside the lock where that is safe, as QEMU's qcow2 driver holds
/// <c>s-&gt;lock</c> only for metadata (<c>qcow2_co_preadv_part</c> looks the clusters up under
/// it and reads the data unlocked; <c>qcow2_co_pwritev_part</c> writes the data of clusters
/// that need no allocation unlocked): a read resolves its clusters under the lock and reads
/// plain data clusters and the backing file after releasing it; a write whose every cluster is
/// already allocated with refcount 1 (COPIED, overwritten in place) marks the bitmaps dirty and
/// resolves under the lock and writes after releasing it. Writes that allocate or copy on
/// write, compressed clusters, extended-L2 subclusters and write-zeroes and discard stay wholly
/// under the lock.</para>
/// <para>The rule that makes this safe: a host cluster an unlocked request resolved is neither
/// freed nor reused before that request ends. Each such request is counted in
/// <see cref="_inFlight"/> from before it releases the lock until its data I/O has finished, and
/// every path that can drop a refcount to zero drains that count while holding the lock before
/// it does so: the write-back of queued frees (discard, write-zeroes with unmap, copy on write
/// of a shared cluster, emptying the image, bitmap removal, table moves all free through it),
/// shrink (which also cuts the file), and close. Host clusters are handed out again only once
/// their refcount is zero, so a request never reads or writes another guest offset's data.
/// A flush covers every write that completed before it: completed data writes are in the file
/// and the flush's fsync comes after them. Overlapping guest requests in flight at the same
/// time are not ordered, as on any disk; callers that need an order (copy before write) wait
/// for one request before issuing the other.</para>
/// </remarks>
public sealed partial class Qcow2Image : IBlockImage, IQcow2ClusterSpace
{
    private readonly HostFile _file;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly InFlightDataIo _inFlight = new();
    private readonly IBlockImage? _backing;
    private Qcow2Header _header;
    private RefcountTable _refcounts = null!;
    private ClusterMap _map = null!;
    private Qcow2BitmapSet _bitmaps = null!;
    private int _disposed;

    // Where the next compressed stream goes and the end of the cluster holding it (0: none yet).
    private long _compressedNext;
    private long _compressedEnd;

    // The bitmap code still uses the cluster space while the image closes (StoreBitmapsAsync
    // runs after _disposed is set), so the space refuses calls only once the file is closed.
    private volatile bool _fileClosed;

    // Set when a metadata write-back or a cluster-space call failed part way: the cached
    // metadata may no longer match the file, so nothing more is written, not even at close
    // (QEMU's qcow2_signal_corruption likewise stops all I/O to the image).
    private volatile bool _broken;

    private Qcow2Image(HostFile file, Qcow2Header header, IBlockImage? backing)
    {
        _file = file;
        _header = header;
        _backing = backing;
    }

    /// <summary>The image file (absolute).</summary>
    public string Path => _file.Path;

    public long VirtualSize => DiskSize.FromQcow2Header(_header.Size);

    public bool IsReadOnly => _file.IsReadOnly;

    public int AllocationGranularity => _header.ClusterSize;

    /// <summary>Cluster size in bytes.</summary>
    public int ClusterSize => _header.ClusterSize;

    /// <summary>2 or 3.</summary>
    public int Version => _header.Version;

    /// <summary>The backing file name exactly as stored in the header, or null.</summary>
    public string? BackingFileName => _header.BackingFile;

    /// <summary>The backing format named in the header (backing format extension), or null.</summary>
    public string? BackingFormat => _header.BackingFormat;

    /// <summary>The opened backing image (read-only), or null.</summary>
    public IBlockImage? Backing => _backing;

    /// <summary>Refcount width in bits.</summary>
    public int RefcountBits => _header.RefcountBits;

    /// <summary>"zlib" or "zstd", as qemu-img info names them.</summary>
    public string CompressionTypeName => _header.CompressionType == Qcow2Layout.CompressionZstd ? "zstd" : "zlib";

    public bool HasExtendedL2 => _header.HasExtendedL2;

    public bool IsMarkedCorrupt => (_header.IncompatibleFeatures & Qcow2Layout.IncompatCorrupt) != 0;

    public bool HasLazyRefcounts => (_header.CompatibleFeatures & Qcow2Layout.CompatLazyRefcounts) != 0;

    /// <summary>
    /// True once writing metadata failed part way (damaged refcounts or tables found while
    /// writing, or an I/O error). A broken image refuses further writes and closes without
    /// writing anything.
    /// </summary>
    public bool IsBroken => _broken;

    /// <summary>
    /// With <see cref="Storage.CacheMode.Unsafe"/>, flushes (and close) do not fsync; the write-back
    /// order is kept, so a killed process still leaves a consistent image.
    /// </summary>
    public CacheMode CacheMode
    {
        get => _file.CacheMode;
        set => _file.CacheMode = value;
    }

    /// <summary>
    /// On a block device, one past the highest byte of it written, zeroed or discarded since
    /// the image was opened: QEMU's <c>wr_highest_offset</c> of the device under an image (0
    /// for an image in a file).
    /// </summary>
    public long HostWriteHighWater => _file.HighestWriteEnd;

    /// <summary>
    /// Streams writes to the disk as they come and keeps only the last few MiB of them in the
    /// page cache (<see cref="Storage.WriteBehind"/>), for a copy into a new image that ends with
    /// an fsync (backups, restores, convert -t writeback); the final flush then has little left
    /// to do. Not for a guest's disk, whose recent writes are worth caching.
    /// </summary>
    public bool WriteBehind
    {
        get => _file.WriteBehind;
        set => _file.WriteBehind = value;
    }

    /// <summary>
    /// <see cref="WriteBehind"/> for the clusters allocated from now on, which are appended to
    /// the file: for a copy into an existing image that ends with a flush (safe rebase, commit). What
    /// the file holds already stays cached.
    /// </summary>
    public void WriteBehindNewClusters() => _file.WriteBehindFrom(_file.Length);

    /// <summary>
    /// Writes the data of gathered writes (<see cref="WriteGatheredAsync"/>) past the page cache
    /// (<see cref="DirectWrites"/>), for an image written once and read back later, if at all:
    /// a pull backup's scratch. Metadata stays cached.
    /// </summary>
    public void WriteGatheredDirectly() => _file.WriteGatheredDirectly();

    /// <summary>Number of internal snapshots (tolerated: kept and counted, never switched to).</summary>
    public int SnapshotCount => _header.SnapshotCount;

    /// <summary>The image's dirty bitmaps, by name: the persistent ones loaded at open, and any added since.</summary>
    public Qcow2BitmapSet Bitmaps => _bitmaps;

    internal Qcow2Header Header => _header;

    /// <summary>
    /// Test seam: awaited by a read or an in-place write once it has released the lock, before
    /// its data I/O, so a test can hold a request there while others free and reuse clusters.
    /// </summary>
    internal Func<ValueTask>? DataIoUnlocked { get; set; }

    internal HostFile File => _file;

    int IQcow2ClusterSpace.ClusterSize => _header.ClusterSize;

    bool IQcow2ClusterSpace.CanStoreBitmaps => _header.Version >= 3;

    ReadOnlyMemory<byte>? IQcow2ClusterSpace.BitmapsExtension
        => (_header.AutoclearFeatures & Qcow2Layout.AutoclearBitmaps) != 0 ? _header.FindExtension(Qcow2Layout.ExtensionBitmaps) : null;

    /// <summary>
    /// Opens a qcow2 image and its backing chain (backing files read-only, their format from the
    /// header's backing format extension, else probed).
    /// </summary>
    /// <exception cref="StorageException">The image is not qcow2, breaks the format, needs an unsupported feature, is locked by another process, or its chain cannot be opened.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static ValueTask<Qcow2Image> OpenAsync(string path, bool readOnly, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return OpenAsync(path, readOnly, [], stated: null, cancellationToken);
    }

    /// <summary>
    /// Opens a qcow2 image without its backing chain even when the header names one:
    /// unallocated clusters then read as zeroes. For a writer that fills whole clusters of an
    /// image whose backing file is open read-write elsewhere in this process (a second open
    /// would conflict with that file's lock), as <see cref="CreateDetachedAsync"/> creates one.
    /// </summary>
    /// <exception cref="StorageException">The image is not qcow2, breaks the format, needs an unsupported feature, or is locked by another process.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static ValueTask<Qcow2Image> OpenDetachedAsync(string path, bool readOnly, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return OpenAsync(path, readOnly, chain: null, stated: null, cancellationToken);
    }

    /// <param name="chain">The images above this one in the chain being opened (loop and depth checks); null opens the image without its backing chain.</param>
    /// <param name="stated">The backing file as stated apart from the header, or null to open the one the header names.</param>
    internal static async ValueTask<Qcow2Image> OpenAsync(string path, bool readOnly, IReadOnlyList<string>? chain, StatedBacking? stated, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var file = HostFile.Open(path, readOnly);
        IBlockImage? backing = null;
        try
        {
            var probe = new byte[Qcow2Header.ProbeLength];
            await file.ReadAsync(0, probe, cancellationToken).ConfigureAwait(false);
            var clusterBits = Qcow2Header.ReadClusterBits(probe.AsSpan(0, (int)Math.Min(probe.Length, file.Length)), file.Path);
            var cluster0 = new byte[1 << clusterBits];
            await file.ReadAsync(0, cluster0, cancellationToken).ConfigureAwait(false);
            var header = Qcow2Header.Parse(cluster0, file.Length, file.Path);
            if (!readOnly)
            {
                CheckWritable(header, file.Path);
            }

            await CheckSnapshotTableAsync(file, header, cancellationToken).ConfigureAwait(false);
            if (chain is not null && stated is { Path: { } statedPath })
            {
                backing = await DiskImage.OpenBackingAsync(file.Path, statedPath, stated.Format.ToName(), [.. chain, file.Path], stated.Below, cancellationToken).ConfigureAwait(false);
            }
            else if (chain is not null && stated is null && header.BackingFile is not null)
            {
                backing = await DiskImage.OpenBackingAsync(file.Path, header.BackingFile, header.BackingFormat, [.. chain, file.Path], below: null, cancellationToken).ConfigureAwait(false);
            }

            var image = new Qcow2Image(file, header, backing);
            await image.LoadTablesAsync(cancellationToken).ConfigureAwait(false);
            if (!readOnly)
            {
                await image.ClearUnknownAutoclearBitsAsync(cancellationToken).ConfigureAwait(false);
            }

            await image.LoadBitmapsAsync(cancellationToken).ConfigureAwait(false);
            return image;
        }
        catch
        {
            if (backing is not null)
            {
                await backing.DisposeAsync().ConfigureAwait(false);
            }

            await file.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static void CheckWritable(Qcow2Header header, string path)
    {
        if ((header.IncompatibleFeatures & Qcow2Layout.IncompatCorrupt) != 0)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"{path}: the image is marked corrupt (incompatible bit 1); open it read-only or repair it with 'qemu-img check -r all'");
        }

        if ((header.IncompatibleFeatures & Qcow2Layout.IncompatDirty) != 0)
        {
            throw new StorageException(StorageErrorReason.UnsupportedFeature, $"{path}: the image is dirty (lazy refcounts, incompatible bit 0), its refcounts cannot be trusted; repair it with 'qemu-img check -r all'");
        }

        if (header.HasExtendedL2)
        {
            throw new StorageException(StorageErrorReason.UnsupportedFeature, $"{path}: writing images with extended L2 entries (incompatible bit 4) is not supported; open it read-only");
        }
    }

    /// <summary>
    /// QEMU reads the snapshot table whenever it opens an image (qcow2_read_snapshots) and
    /// refuses one it cannot read; so does this open, though it keeps nothing of the table:
    /// Tidemark never switches to a snapshot, it only keeps their clusters.
    /// </summary>
    private static async ValueTask CheckSnapshotTableAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        try
        {
            _ = await SnapshotTable.ReadAsync(file, header, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new StorageException(e.Reason, $"{file.Path}: {e.Message}", e);
        }
    }

    private async ValueTask LoadTablesAsync(CancellationToken cancellationToken)
    {
        _refcounts = await RefcountTable.LoadAsync(_file, _header, OnRefcountTableMovedAsync, cancellationToken).ConfigureAwait(false);
        _map = await ClusterMap.LoadAsync(_file, _header, ValidHostEnd, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One past the last host byte a table entry may reference: the file's last cluster, or anything allocated since open.</summary>
    private long ValidHostEnd() => Math.Max(_refcounts.HighWater, _refcounts.FileClustersAtOpen) << _header.ClusterBits;

    /// <summary>Formats.md §1.2: a writer clears autoclear bits it does not know before its first write.</summary>
    private async ValueTask ClearUnknownAutoclearBitsAsync(CancellationToken cancellationToken)
    {
        if ((_header.AutoclearFeatures & ~Qcow2Layout.AutoclearKnownMask) != 0)
        {
            await RewriteHeaderAsync(_header with { AutoclearFeatures = _header.AutoclearFeatures & Qcow2Layout.AutoclearKnownMask }, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask OnRefcountTableMovedAsync(long offset, int clusters, CancellationToken cancellationToken)
        => await RewriteHeaderAsync(_header with { RefcountTableOffset = offset, RefcountTableClusters = clusters }, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Writes cluster 0 from <paramref name="header"/> and flushes; the in-memory header changes
    /// only once that succeeded. The write is one pwrite of the bytes either header uses
    /// (<see cref="Qcow2Header.RewriteLength"/>), so a killed process leaves the old header or
    /// the new one whenever those fit in the first page.
    /// </summary>
    private async ValueTask RewriteHeaderAsync(Qcow2Header header, CancellationToken cancellationToken)
    {
        var bytes = header.Serialize();
        var length = Qcow2Header.RewriteLength(bytes, _header.Serialize());
        await _file.WriteAsync(0, bytes.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        _header = header;
    }

    // ---- Persistent-bitmap seams (filled in by the bitmap code; formats.md §2.6) ----

    /// <summary>Seam: at open, after the tables are loaded (Qcow2BitmapSet.LoadAsync marks IN_USE when read-write).</summary>
    private async ValueTask LoadBitmapsAsync(CancellationToken cancellationToken)
    {
        try
        {
            _bitmaps = await Qcow2BitmapSet.LoadAsync(this, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new StorageException(e.Reason, $"{Path}: {e.Message}", e);
        }
    }

    /// <summary>Seam: every guest write, write-zeroes and discard, before it is acknowledged.</summary>
    private void MarkBitmapsDirty(long offset, long length) => _bitmaps.MarkDirty(offset, length);

    /// <summary>Seam: at clean close of a read-write image, before the final flush (stores bitmaps, clears IN_USE).</summary>
    private ValueTask StoreBitmapsAsync(CancellationToken cancellationToken) => _bitmaps.StoreAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            // Requests that passed their checks before _disposed was set may still be reading or
            // writing data without the lock; later ones see _disposed under the lock and fail.
            await _lock.WaitAsync().ConfigureAwait(false);
            try
            {
                await _inFlight.DrainAsync().ConfigureAwait(false);
            }
            finally
            {
                _lock.Release();
            }

            // A broken image has already said what went wrong; closing it writes nothing and
            // does not fail again.
            if (!IsReadOnly && !_broken)
            {
                try
                {
                    await StoreBitmapsAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    throw Break(e, "storing dirty bitmaps");
                }

                await _lock.WaitAsync().ConfigureAwait(false);
                try
                {
                    await FlushMetadataAsync(CancellationToken.None).ConfigureAwait(false);
                }
                finally
                {
                    _lock.Release();
                }
            }
        }
        finally
        {
            _fileClosed = true;
            await _file.DisposeAsync().ConfigureAwait(false);
            if (_backing is not null)
            {
                await _backing.DisposeAsync().ConfigureAwait(false);
            }

            // _lock is not disposed: a request that took it before _disposed was set releases it
            // after this point, and disposing a SemaphoreSlim would make that Release throw and
            // strand the requests queued behind it (they then see _disposed and fail). Without
            // a wait handle ever asked for, it holds nothing to release.
        }
    }

    // ---- IQcow2ClusterSpace (formats.md §2.6: the bitmap code orders its own writes) ----

    async ValueTask<long> IQcow2ClusterSpace.AllocateClustersAsync(int count, CancellationToken cancellationToken)
    {
        CheckSpaceWritable();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await _refcounts.AllocateAsync(count, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Break(e, "allocating clusters");
        }
        finally
        {
            _lock.Release();
        }
    }

    async ValueTask IQcow2ClusterSpace.FreeClustersAsync(long hostOffset, int count, CancellationToken cancellationToken)
    {
        CheckSpaceWritable();
        CheckMetadataRange(hostOffset, (long)count << _header.ClusterBits);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Applied at the next flush, after the pointers that were written before this call are durable.
            _refcounts.QueueFree(hostOffset, count);
        }
        finally
        {
            _lock.Release();
        }
    }

    ValueTask IQcow2ClusterSpace.ReadMetadataAsync(long hostOffset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckMetadataRange(hostOffset, buffer.Length);
        return _file.ReadAsync(hostOffset, buffer, cancellationToken);
    }

    async ValueTask IQcow2ClusterSpace.WriteMetadataAsync(long hostOffset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckSpaceWritable();
        CheckMetadataRange(hostOffset, data.Length);
        try
        {
            await _file.WriteAsync(hostOffset, data, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Break(e, "writing metadata");
        }
    }

    async ValueTask IQcow2ClusterSpace.FlushAsync(CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    async ValueTask IQcow2ClusterSpace.WriteBitmapsExtensionAsync(ReadOnlyMemory<byte>? extension, bool bitmapsConsistent, CancellationToken cancellationToken)
    {
        CheckSpaceWritable();
        if (extension is { Length: not Qcow2Layout.BitmapsExtensionLength })
        {
            throw new ArgumentException($"the bitmaps extension is {Qcow2Layout.BitmapsExtensionLength} bytes", nameof(extension));
        }

        if (extension is not null && _header.Version < 3)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"{Path}: Cannot store dirty bitmaps in qcow2 v2 files");
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var autoclear = bitmapsConsistent ? _header.AutoclearFeatures | Qcow2Layout.AutoclearBitmaps : _header.AutoclearFeatures & ~Qcow2Layout.AutoclearBitmaps;
            var header = _header.WithExtension(Qcow2Layout.ExtensionBitmaps, extension) with { AutoclearFeatures = autoclear };
            if (extension is not null && !FitsClusterZero(header))
            {
                // With 512-byte clusters the feature name table leaves no room for the bitmaps
                // extension; QEMU writes no table there either, it only names unknown bits.
                header = header.WithExtension(Qcow2Layout.ExtensionFeatureTable, null);
            }

            await RewriteHeaderAsync(header, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    private static bool FitsClusterZero(Qcow2Header header)
    {
        try
        {
            _ = header.Serialize();
            return true;
        }
        catch (StorageException e) when (e.Reason == StorageErrorReason.LimitExceeded)
        {
            return false;
        }
    }

    // The offsets come from on-disk metadata (a bitmap table, a directory), so a bad one means
    // a corrupt image, not a caller's mistake.
    private void CheckMetadataRange(long hostOffset, long length)
    {
        ObjectDisposedException.ThrowIf(_fileClosed, this);
        if (hostOffset < _header.ClusterSize || length < 0 || hostOffset > long.MaxValue - length)
        {
            throw Break(new StorageException(StorageErrorReason.Corrupt, $"{Path}: metadata range {hostOffset}+{length} is in the header or invalid"), "checking a metadata range");
        }
    }

    private void CheckSpaceWritable()
    {
        ObjectDisposedException.ThrowIf(_fileClosed, this);
        if (IsReadOnly)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"{Path}: image is opened read-only");
        }

        CheckNotBroken();
    }

    private void CheckWritable()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (IsReadOnly)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"{Path}: image is opened read-only");
        }

        CheckNotBroken();
    }

    private void CheckNotBroken()
    {
        if (_broken)
        {
            throw new StorageException(StorageErrorReason.Corrupt, $"{Path}: an earlier metadata update failed; the image takes no more writes (close it and run 'qemu-img check')");
        }
    }

    /// <summary>
    /// Marks the image broken and returns the failure to throw: a storage refusal or an I/O
    /// error as it is, anything else (a bound that damaged metadata slipped past) as corruption
    /// found while <paramref name="doing"/>.
    /// </summary>
    private Exception Break(Exception e, string doing)
    {
        _broken = true;
        return e is StorageException or IOException ? e : new StorageException(StorageErrorReason.Corrupt, $"{Path}: {doing} failed: {e.Message}", e);
    }

    private void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset > VirtualSize || length > VirtualSize - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"{Path}: range {offset}+{length} is past the end of the image ({VirtualSize} bytes)");
        }
    }
}
