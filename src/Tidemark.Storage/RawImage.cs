namespace Tidemark.Storage;

/// <summary>
/// A raw disk image: guest offset equals file offset. Holes in a sparse file are reported as
/// zeroes the file provides (hole and zero, depth 1), found with <c>lseek(SEEK_DATA/SEEK_HOLE)</c> as <c>qemu-img map</c> does.
/// </summary>
public sealed class RawImage : IHostFileImage
{
    // FALLOC_FL_* from <linux/falloc.h>.
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int FallocZeroRange = 0x10;

    // The open file, its QEMU locks and its fsync policy; every byte goes through it.
    private readonly HostFile _file;
    private int _disposed;

    private RawImage(HostFile file, long size)
    {
        _file = file;
        VirtualSize = size;
    }

    // Changed only by ResizeAsync, while no request is in flight (its caller's duty).
    public long VirtualSize { get; private set; }

    public bool IsReadOnly => _file.IsReadOnly;

    /// <summary>
    /// Denies other processes the write permission until the result is disposed, where the
    /// image was opened sharing it (a shareable disk); null where it is denied already. A
    /// point-in-time reader needs no writer it cannot see: QEMU's copy-before-write filter
    /// unshares WRITE on the node below it, and a backup of a disk another VM writes fails.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Locked"/>: another process writes the file ("Failed to get shared "write" lock").</exception>
    public IDisposable? ExcludeOtherWriters() => _file.ExcludeOtherWriters();

    /// <summary>4 KiB: the block size of every Linux file system that supports holes well.</summary>
    public int AllocationGranularity => 4096;

    /// <summary>The file this image reads and writes.</summary>
    public string Path => _file.Path;

    /// <summary>Opens an existing raw file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened with the requested access.</exception>
    /// <exception cref="StorageException">Another process holds a conflicting lock (QEMU's byte-range locks).</exception>
    /// <param name="path">The file.</param>
    /// <param name="readOnly">Open it for reading only.</param>
    /// <param name="shareWrites">Let others write the file meanwhile, as a shareable disk of several domains (<see cref="HostFile.Open"/>).</param>
    public static RawImage Open(string path, bool readOnly, bool shareWrites = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = HostFile.Open(path, readOnly, shareWrites);

        // A length that is not whole sectors ends in zeroes up to the next sector, as in QEMU.
        return new RawImage(file, DiskSize.RoundUp(file.Length));
    }

    /// <summary>
    /// Resizes the open image (QEMU's block_resize on a raw node, raw_co_truncate): a file takes
    /// the length asked for, a grown tail being a hole; a block device cannot change size. The
    /// caller makes sure no request is in flight meanwhile.
    /// </summary>
    /// <exception cref="StorageException">The image is read-only, or a block device whose size is not <paramref name="newSize"/>.</exception>
    public async ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(newSize);
        CheckWritable();
        if (_file.IsBlockDevice)
        {
            if (newSize > _file.Length)
            {
                throw new StorageException(StorageErrorReason.InvalidRequest, "Cannot grow device files");
            }

            throw new StorageException(StorageErrorReason.InvalidRequest, "Cannot resize device files");
        }

        _file.SetLength(newSize);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        VirtualSize = DiskSize.RoundUp(newSize);
    }

    /// <summary>
    /// Sets a raw file's length to <paramref name="newSize"/> bytes, as <c>qemu-img resize</c>
    /// does (raw_co_truncate: the length asked for, not rounded; a grown tail is a hole).
    /// </summary>
    /// <exception cref="StorageException">Another process holds a conflicting lock, or the file is a block device and the size is not its own.</exception>
    public static async ValueTask ResizeAsync(string path, long newSize, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegative(newSize);
        var file = HostFile.Open(path, readOnly: false);
        await using (file.ConfigureAwait(false))
        {
            if (file.IsBlockDevice && newSize != file.Length)
            {
                // qemu-img resize asks for the exact size (raw_co_truncate, exact=true), which a
                // device cannot take in either direction.
                throw new StorageException(StorageErrorReason.InvalidRequest, "Cannot resize device files");
            }

            file.SetLength(newSize);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Creates (or truncates) a sparse raw file of <paramref name="size"/> bytes rounded up to whole sectors (<see cref="DiskSize"/>).</summary>
    /// <exception cref="StorageException">Another process holds a conflicting lock (QEMU's byte-range locks).</exception>
    public static RawImage Create(string path, long size)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var file = HostFile.Create(path);
        size = DiskSize.RoundUp(size);
        try
        {
            file.SetLength(size);
        }
        catch
        {
            // A device smaller than the size asked for: its lock and descriptor go now.
            file.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }

        return new RawImage(file, size);
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);

        // Past end of file reads as zeroes (the file may have shrunk under us).
        return _file.ReadAsync(offset, buffer, cancellationToken);
    }

    public bool TryGetHostFile(long offset, long length, out FileStream file)
    {
        CheckRange(offset, length);
        file = _file.Stream;

        // One fstat instead of copying the range: past the end of a shrunk file only ReadAsync
        // gives the zeroes the guest must see.
        return offset + length <= _file.Length;
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        await _file.WriteAsync(offset, data, cancellationToken).ConfigureAwait(false);
        if ((flags & WriteFlags.ForceUnitAccess) != 0)
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();
        if (length == 0)
        {
            return;
        }

        var mode = (flags & WriteFlags.MayUnmap) != 0 ? FallocPunchHole | FallocKeepSize : FallocZeroRange | FallocKeepSize;
        if (Fallocate(mode, offset, length) != 0)
        {
            if ((flags & WriteFlags.FastZero) != 0)
            {
                throw new NotSupportedException($"{Path}: the file system cannot zero a range quickly");
            }

            await WriteZeroBuffersAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }

        if ((flags & WriteFlags.ForceUnitAccess) != 0)
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();

        // Discard is advisory: a file system that cannot punch holes keeps the data, which is allowed.
        if (length > 0)
        {
            _ = Fallocate(FallocPunchHole | FallocKeepSize, offset, length);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>With <see cref="Storage.CacheMode.Unsafe"/>, flushes do not fsync (QEMU's cache=unsafe).</summary>
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

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _file.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();
        // Every byte of a raw file belongs to the file, holes included: a hole is a zero range
        // the file itself provides (QEMU marks it BDRV_BLOCK_ZERO, hence allocated; qemu-nbd's
        // qemu:allocation-depth says "local" and qemu-img map "present": true). So depth is 1
        // throughout, and only the kind tells a hole from data.
        var extents = _file.FindData(offset, offset + length, maxRuns: 1024)
            .Select(run => new BlockExtent(run.Start, run.End - run.Start, run.IsData ? ExtentKind.Data : ExtentKind.Hole | ExtentKind.Zero, 1))
            .ToList();
        return ValueTask.FromResult<IReadOnlyList<BlockExtent>>(extents);
    }

    public ValueTask DisposeAsync()
        => Interlocked.Exchange(ref _disposed, 1) == 0 ? _file.DisposeAsync() : ValueTask.CompletedTask;

    private async ValueTask WriteZeroBuffersAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var zeroes = new byte[(int)Math.Min(length, 1 << 20)];
        while (length > 0)
        {
            var n = (int)Math.Min(length, zeroes.Length);
            await _file.WriteAsync(offset, zeroes.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            offset += n;
            length -= n;
        }
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

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"{Path}: image is opened read-only");
        }
    }

    private int Fallocate(int mode, long offset, long length) => _file.Fallocate(mode, offset, length);
}
