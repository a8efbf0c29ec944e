using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Storage;

/// <summary>
/// The host file under an image: positional async reads and writes, fdatasync, and
/// QEMU-compatible byte-range locks (<see cref="ImageLock"/>). Reads past end of file return
/// zeroes, as the qcow2 spec requires for a file that ends inside its last cluster (formats.md §1.1).
/// </summary>
/// <remarks>
/// A flush is skipped when nothing changed the file through this object since the last one
/// that succeeded, as QEMU's bdrv_co_flush skips it (write_gen == flushed_gen): the qcow2
/// write-back order flushes between its steps, and a step with nothing to write (no pending
/// refcounts, say, or the close after a final flush) then costs no sync. The first flush of a
/// writable file always syncs, so it also covers whatever was written to the file before it
/// was opened here.
/// </remarks>
internal sealed class HostFile : IAsyncDisposable
{
    // lseek whence values from <unistd.h> on Linux (SEEK_DATA/SEEK_HOLE since 3.1), and ENXIO.
    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int ENXIO = 6;
    private const int EINTR = 4;
    private const int ENOSYS = 38;
    private const int EOPNOTSUPP = 95;

    // RWF_NOWAIT from <linux/fs.h> (preadv2 on buffered files since Linux 4.14).
    private const int RwfNoWait = 0x08;

    // FALLOC_FL_* from <linux/falloc.h>.
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;

    // statx: AT_EMPTY_PATH from <fcntl.h> (the descriptor itself), STATX_TYPE and STATX_BLOCKS
    // from <linux/stat.h>; S_IFMT and S_IFBLK from <sys/stat.h>.
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1;
    private const uint StatxBlocks = 0x400;
    private const int FileTypeMask = 0xF000;
    private const int BlockDeviceType = 0x6000;

    // BLKGETSIZE64 from <linux/fs.h>: _IOR(0x12, 114, size_t), the device's size in bytes.
    private const nuint BlockGetSize64 = 0x80081272;

    private readonly SafeFileHandle _handle;
    private FileStream? _stream;
    private Storage.WriteBehind? _writeBehind;
    private DirectWrites? _directWrites;
    private int _disposed;

    /// <summary>Changes made through this object (writes, size changes, fallocate), counted when each completes; starts at 1 so the first flush syncs.</summary>
    private long _writeGeneration = 1;

    /// <summary>The <see cref="_writeGeneration"/> the last successful flush covered.</summary>
    private long _flushedGeneration;

    /// <summary><see cref="HighestWriteEnd"/>.</summary>
    private long _highestWriteEnd;

    // The last data region lseek found, [_knownDataStart, _knownDataEnd) (empty when equal), as
    // QEMU's block-status cache keeps one for a file (block/io.c, bdrv_bsc_*): a query inside it
    // is answered without asking the file system again. Writes only turn holes into data, so
    // only what makes holes (truncation, fallocate) forgets it; _holesMade counts those, so an
    // answer found while one ran is not kept.
    private readonly Lock _knownDataLock = new();
    private long _knownDataStart;
    private long _knownDataEnd;
    private long _holesMade;

    private HostFile(SafeFileHandle handle, string path, bool readOnly, bool blockDevice, bool sharesWrites = false)
    {
        _handle = handle;
        Path = path;
        IsReadOnly = readOnly;
        IsBlockDevice = blockDevice;
        SharesWrites = sharesWrites;
    }

    public string Path { get; }

    /// <summary>
    /// Whether this is a block device (a logical volume, a partition, a loop device), as QEMU's
    /// host_device driver opens one: its length is the device's size, it can be neither grown
    /// nor shrunk, and what it holds past what an image wrote there is whatever was on it
    /// before, never zeroes to count on.
    /// </summary>
    public bool IsBlockDevice { get; }

    public bool IsReadOnly { get; }

    /// <summary>Opened letting others write the file meanwhile (<see cref="Open"/>'s shareWrites).</summary>
    public bool SharesWrites { get; }

    /// <summary>
    /// Denies others the write permission until the result is disposed, on a file opened
    /// sharing it (<see cref="SharesWrites"/>); null on any other, which denies it already.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Locked"/>: another process writes the file.</exception>
    public IDisposable? ExcludeOtherWriters()
    {
        if (!SharesWrites)
        {
            return null;
        }

        WithHandle(handle => ImageLock.DenyWrites(handle, Path));
        return new WriterExclusion(this);
    }

    // The descriptor stays open while a lock call uses it: a handle closed meanwhile (the image
    // disposed) is skipped rather than its number, perhaps reused, locked.
    private void WithHandle(Action<SafeFileHandle> action)
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            action(_handle);
        }
        catch (ObjectDisposedException)
        {
            // Closed: its locks went with it.
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    private sealed class WriterExclusion(HostFile file) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                file.WithHandle(ImageLock.AllowWrites);
            }
        }
    }

    /// <summary>With <see cref="CacheMode.Unsafe"/>, <see cref="FlushAsync"/> does not fsync.</summary>
    public CacheMode CacheMode { get; set; }

    internal SafeFileHandle Handle => _handle;

    /// <summary>
    /// Streams what is written to the disk as it is written (<see cref="Storage.WriteBehind"/>):
    /// for a copy into a new file that ends with an fsync, never for a guest's disk.
    /// </summary>
    public bool WriteBehind
    {
        get => _writeBehind is not null;
        set
        {
            if (value)
            {
                WriteBehindFrom(0);
            }
            else
            {
                _writeBehind = null;
            }
        }
    }

    /// <summary>
    /// <see cref="WriteBehind"/> for what is written past <paramref name="start"/> only: an
    /// existing file that grows, whose earlier bytes are neither waited for nor dropped from the
    /// page cache.
    /// </summary>
    public void WriteBehindFrom(long start) => _writeBehind ??= new Storage.WriteBehind(_handle, start);

    /// <summary>
    /// Sends gathered writes (<see cref="WriteGatheredOnCallingThread"/>) past the page cache
    /// where they are aligned (<see cref="DirectWrites"/>): for data written once and seldom
    /// read back soon. A file system that refuses direct I/O keeps every write buffered.
    /// </summary>
    public void WriteGatheredDirectly()
    {
        ThrowIfReadOnly();
        _directWrites ??= DirectWrites.Open(Path);
    }

    /// <summary>
    /// Starts reading <paramref name="length"/> bytes at <paramref name="offset"/> into the page
    /// cache without waiting (<c>POSIX_FADV_WILLNEED</c>): for reads about to come that the
    /// kernel's readahead cannot foresee. Only a hint; a file system that refuses it is left alone.
    /// </summary>
    public void AdviseWillNeed(long offset, long length)
        => PageCacheAdvice.WillNeed((int)_handle.DangerousGetHandle(), offset, length);

    /// <summary>Opens an existing file and takes QEMU's locks for reading, or reading and writing.</summary>
    /// <param name="path">The file.</param>
    /// <param name="readOnly">Open it for reading only.</param>
    /// <param name="shareWrites">Let others write it meanwhile (QEMU's <c>share-rw=on</c>; <see cref="ImageLock.Acquire"/>).</param>
    /// <exception cref="StorageException">Another process holds a conflicting lock (<see cref="StorageErrorReason.Locked"/>).</exception>
    public static HostFile Open(string path, bool readOnly, bool shareWrites = false)
    {
        // An absolute path stays as given ("sub/../base.qcow2" included): it is the name QEMU
        // and libvirt show for a backing file (DiskImage.ResolveBackingPath).
        var full = System.IO.Path.IsPathRooted(path) ? path : System.IO.Path.GetFullPath(path);
        var handle = File.OpenHandle(full, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
        try
        {
            ImageLock.Acquire(handle, full, readOnly, shareWrites);
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        return new HostFile(handle, full, readOnly, IsBlockDeviceHandle(handle), shareWrites);
    }

    /// <summary>Creates (or truncates) a file for a new image and locks it for writing.</summary>
    public static HostFile Create(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        var handle = File.OpenHandle(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
        bool blockDevice;
        try
        {
            ImageLock.Acquire(handle, full, readOnly: false);

            // Truncate only a file that has content. On ext4, truncating to size 0, even a file
            // that is already empty, marks the inode so that the next close of any descriptor
            // of it starts write-back of every dirty page and waits for block allocation (the
            // auto_da_alloc heuristic for programs that rewrite a file in place): after copying
            // 1 GiB into a reused image that close alone took ~0.5 s. QEMU's create closes the
            // file after truncating it and opens it again to write the image, which clears the
            // mark while nothing is dirty; closing a second descriptor here does the same.
            blockDevice = IsBlockDeviceHandle(handle);
            if (!blockDevice && RandomAccess.GetLength(handle) != 0)
            {
                RandomAccess.SetLength(handle, 0);
                File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete).Dispose();
            }
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        return new HostFile(handle, full, readOnly: false, blockDevice);
    }

    /// <summary>The file's length; a block device's size (fstat reports 0 for one).</summary>
    public long Length => IsBlockDevice ? BlockDeviceSize(_handle, Path) : RandomAccess.GetLength(_handle);

    /// <summary>The length of an open file, or the size of an open block device.</summary>
    public static long LengthOf(SafeFileHandle handle, string path)
        => IsBlockDeviceHandle(handle) ? BlockDeviceSize(handle, path) : RandomAccess.GetLength(handle);

    private static long BlockDeviceSize(SafeFileHandle handle, string path)
    {
        if (NativeMethods.ioctl((int)handle.DangerousGetHandle(), BlockGetSize64, out var size) != 0)
        {
            throw new IOException($"{path}: cannot read the block device's size (errno {Marshal.GetLastPInvokeError()})");
        }

        return (long)size;
    }

    public static bool IsBlockDeviceHandle(SafeFileHandle handle)
    {
        var buffer = new byte[256];
        if (NativeMethods.statx((int)handle.DangerousGetHandle(), string.Empty, AtEmptyPath, StatxType, buffer) != 0)
        {
            return false;
        }

        // struct statx: stx_mode is the u16 at offset 28.
        return (BitConverter.ToUInt16(buffer, 28) & FileTypeMask) == BlockDeviceType;
    }

    /// <summary>
    /// A stream over the same descriptor, for APIs that take a <see cref="FileStream"/> and read
    /// it positionally (<c>Socket.SendPacketsAsync</c> sends it with <c>sendfile</c>). Made once
    /// and never disposed: the descriptor belongs to this object, which closes it.
    /// </summary>
    public FileStream Stream
    {
        get
        {
            if (_stream is not null)
            {
                return _stream;
            }

            var created = new FileStream(_handle, IsReadOnly ? FileAccess.Read : FileAccess.ReadWrite, bufferSize: 0, isAsync: _handle.IsAsync);
            return Interlocked.CompareExchange(ref _stream, created, null) ?? created;
        }
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"{Path}: opened read-only");
        }
    }

    /// <summary>
    /// Largest read or write done on the calling thread when the page cache can take it at
    /// once (<see cref="ReadAsync"/>, <see cref="WriteAsync"/>).
    /// </summary>
    /// <remarks>
    /// .NET's asynchronous file I/O on Linux is a pread or pwrite queued to a pool thread, whose
    /// completion is queued back: two thread wake-ups around a copy of a few KiB that the page
    /// cache does in a microsecond or two. A guest's 4 KiB write paid that once, and during a
    /// pull backup three times (its own write, and the read and scratch write of its copy
    /// before write). Larger transfers still go to the pool, where several run on both CPUs at
    /// once and the hand-off costs little next to the copy.
    /// </remarks>
    public const int InlineIoLimit = 64 << 10;

    /// <summary>preadv2 found that this file system or kernel refuses RWF_NOWAIT: every read goes to the pool.</summary>
    private bool _noWaitRefused;

    /// <summary>
    /// Fills <paramref name="buffer"/> from <paramref name="offset"/>; bytes past end of file read
    /// as zero. A small read the page cache holds is copied on the calling thread (preadv2 with
    /// RWF_NOWAIT, which never waits for the disk); the rest goes to the pool.
    /// </summary>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var done = buffer.Length <= InlineIoLimit && !cancellationToken.IsCancellationRequested ? ReadCached(offset, buffer.Span) : 0;
        return done == buffer.Length ? ValueTask.CompletedTask : ReadPooledAsync(offset + done, buffer[done..], cancellationToken);
    }

    /// <summary>The bytes at <paramref name="offset"/> the page cache holds, copied without blocking; 0 when none are (or the file ends there).</summary>
    private unsafe int ReadCached(long offset, Span<byte> buffer)
    {
        if (_noWaitRefused)
        {
            return 0;
        }

        fixed (byte* start = buffer)
        {
            var vector = new IoVector(start, (nuint)buffer.Length);
            var n = NativeMethods.preadv2((int)_handle.DangerousGetHandle(), &vector, 1, offset, RwfNoWait);
            if (n >= 0)
            {
                return (int)n;
            }
        }

        // EAGAIN: not all cached. Anything else (EOPNOTSUPP on a file system without the flag,
        // ENOSYS on an old kernel, EIO) is left to the pool's pread, which reports real errors.
        if (Marshal.GetLastPInvokeError() is EOPNOTSUPP or ENOSYS)
        {
            _noWaitRefused = true;
        }

        return 0;
    }

    private async ValueTask ReadPooledAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                buffer.Span[done..].Clear();
                return;
            }

            done += n;
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/>. A write of at most
    /// <see cref="InlineIoLimit"/> bytes is made on the calling thread: the page cache takes it
    /// at once (ext4 refuses RWF_NOWAIT for buffered writes, so there is no asking first). With
    /// <see cref="WriteBehind"/>, one such write in every few MiB also waits for the writeback of
    /// a step that is already on its way to the disk, as a pool thread would.
    /// </summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();

        return data.Length <= InlineIoLimit
            ? WriteOnCallingThreadAsync(offset, data, cancellationToken)
            : WriteCountedAsync(offset, data, cancellationToken);
    }

    /// <summary>
    /// As <see cref="WriteAsync"/>, but the pwrite runs on the calling thread whatever its size
    /// and the returned task has completed: for writes made while holding a lock that other
    /// requests queue on (the qcow2 metadata lock around an allocating write).
    /// </summary>
    /// <remarks>
    /// .NET's asynchronous file I/O on Linux is a pwrite queued to a thread-pool thread, whose
    /// completion is queued back: two thread wake-ups around a write that the page cache takes
    /// in a few microseconds. Under a lock every waiter pays for both, and on a loaded machine a
    /// woken thread waits for a CPU: 16,384 allocating 64 KiB qcow2 writes made 2.3 futex waits
    /// or sched_yields each (strace -c) and ~1 KiB of garbage each, and a pull backup's scratch
    /// took ~1,700 such writes a second at load 20. The data waits in the page cache either way,
    /// so the calling thread blocks no longer than a pool thread would; <see cref="FlushAsync"/>'s
    /// fdatasync runs on the calling thread for the same reason.
    /// </remarks>
    public ValueTask WriteOnCallingThreadAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            RandomAccess.Write(_handle, data.Span, offset);
            _writeBehind?.Written(offset, data.Length);
            Wrote(offset + data.Length);
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e);
        }
        finally
        {
            Changed();
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> one after the other from <paramref name="offset"/> with one
    /// vectored write (pwritev), on the calling thread as <see cref="WriteOnCallingThreadAsync"/>.
    /// </summary>
    public void WriteGatheredOnCallingThread(long offset, IReadOnlyList<ReadOnlyMemory<byte>> data)
    {
        ThrowIfReadOnly();
        try
        {
            var length = 0L;
            foreach (var piece in data)
            {
                length += piece.Length;
            }

            if (!TryWriteDirectly(offset, length, data))
            {
                RandomAccess.Write(_handle, data, offset);
            }

            _writeBehind?.Written(offset, length);
            Wrote(offset + length);
        }
        finally
        {
            Changed();
        }
    }

    /// <summary>A gathered write through <see cref="DirectWrites"/>; false where it must go through the page cache.</summary>
    private bool TryWriteDirectly(long offset, long length, IReadOnlyList<ReadOnlyMemory<byte>> data)
    {
        if (_directWrites is not { } direct || !DirectWrites.Fits(offset, length))
        {
            return false;
        }

        try
        {
            direct.Write(offset, data);
            return true;
        }
        catch (IOException e) when (e.HResult == DirectWrites.EINVAL)
        {
            // Opened for O_DIRECT but refused as misaligned: the page cache takes this write
            // and every later one. Rewriting what a first step may have written is harmless:
            // the same bytes at the same place.
            _directWrites = null;
            direct.Dispose();
            return false;
        }
    }

    private async ValueTask WriteCountedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        try
        {
            await RandomAccess.WriteAsync(_handle, data, offset, cancellationToken).ConfigureAwait(false);
            _writeBehind?.Written(offset, data.Length);
            Wrote(offset + data.Length);
        }
        finally
        {
            // Counted once the write is over (or failed part way, which may still have changed
            // the file): a flush that starts after this sees it.
            Changed();
        }
    }

    /// <summary>
    /// fdatasync: everything written so far is durable when this completes. Data and the file
    /// size are all an image needs (QEMU's file driver flushes with fdatasync too); the inode's
    /// times are not worth a journal commit.
    /// </summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (IsReadOnly || CacheMode != CacheMode.Writeback)
        {
            return ValueTask.CompletedTask;
        }

        var generation = Interlocked.Read(ref _writeGeneration);
        if (generation == Interlocked.Read(ref _flushedGeneration))
        {
            return ValueTask.CompletedTask;
        }

        int result;
        do
        {
            result = NativeMethods.fdatasync((int)_handle.DangerousGetHandle());
        }
        while (result != 0 && Marshal.GetLastPInvokeError() == EINTR);

        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"{Path}: fdatasync failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }

        // Only ever raised by a flush that covered it; a racing flush that stores an older
        // generation costs one more sync later, never one too few.
        long seen;
        do
        {
            seen = Interlocked.Read(ref _flushedGeneration);
        }
        while (seen < generation && Interlocked.CompareExchange(ref _flushedGeneration, generation, seen) != seen);

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Sets the file's length. A block device keeps its size: a length within it is accepted
    /// and changes nothing, a larger one is refused, as QEMU's host_device truncate does.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.InvalidRequest"/>: a block device would have to grow.</exception>
    public void SetLength(long length)
    {
        if (IsBlockDevice)
        {
            var size = BlockDeviceSize(_handle, Path);
            if (length > size)
            {
                throw new StorageException(StorageErrorReason.InvalidRequest, $"{Path}: Cannot grow device files");
            }

            return;
        }

        try
        {
            RandomAccess.SetLength(_handle, length);
        }
        finally
        {
            Changed();
            ForgetKnownData();
        }
    }

    /// <summary>fallocate(2) on the file; returns 0 or -1 with errno in <see cref="Marshal.GetLastPInvokeError"/>.</summary>
    public int Fallocate(int mode, long offset, long length)
    {
        try
        {
            var done = NativeMethods.fallocate((int)_handle.DangerousGetHandle(), mode, offset, length);
            if (done == 0)
            {
                Wrote(offset + length);
            }

            return done;
        }
        finally
        {
            // A punch or zero range may have made holes; either way the next flush must sync.
            Changed();
            ForgetKnownData();
        }
    }

    private void Changed() => Interlocked.Increment(ref _writeGeneration);

    /// <summary>
    /// On a block device, one past the highest byte written (or zeroed, or discarded) through
    /// this object since it was opened: QEMU's <c>wr_highest_offset</c> of a protocol node,
    /// which libvirt reports as the allocation of a running disk on a block device
    /// (qemuDomainGetBlockInfo), where a qcow2 image's clusters fill the device from the front.
    /// 0 for a file: only a device's is ever reported, and a file's would cost every allocating
    /// write a compare-exchange on one shared word.
    /// </summary>
    public long HighestWriteEnd => Volatile.Read(ref _highestWriteEnd);

    private void Wrote(long end)
    {
        if (!IsBlockDevice)
        {
            return;
        }

        var seen = Volatile.Read(ref _highestWriteEnd);
        while (end > seen)
        {
            var before = Interlocked.CompareExchange(ref _highestWriteEnd, end, seen);
            if (before == seen)
            {
                return;
            }

            seen = before;
        }
    }

    /// <summary>
    /// Gives the host blocks of <c>[offset, offset + length)</c> back to the file system
    /// (fallocate PUNCH_HOLE, the length kept), as QEMU's file-posix does with a discard passed
    /// down to it; the range reads as zeroes afterwards. Advisory, as QEMU's qcow2_process_discards
    /// treats it: where the file system cannot punch holes, the data stays.
    /// </summary>
    public void PunchHole(long offset, long length)
    {
        if (!IsReadOnly && length > 0)
        {
            // Through Fallocate so the change is counted and the next flush syncs it.
            _ = Fallocate(FallocPunchHole | FallocKeepSize, offset, length);
        }
    }

    /// <summary>Called after anything that may have made holes in the file (fallocate punch or zero range).</summary>
    private void ForgetKnownData()
    {
        lock (_knownDataLock)
        {
            _holesMade++;
            _knownDataEnd = _knownDataStart;
        }
    }

    /// <summary>
    /// Which parts of <c>[start, end)</c> the file stores data for and which are holes, as
    /// lseek(SEEK_DATA/SEEK_HOLE) finds them (QEMU's file-posix block status asks the same way).
    /// Past the end of the file is a hole. Where the file system cannot tell, the rest is
    /// reported as data, which is always safe. At most <paramref name="maxRuns"/> runs; the
    /// caller asks again from where the list ends.
    /// </summary>
    public List<HostRun> FindData(long start, long end, int maxRuns)
    {
        var runs = new List<HostRun>();
        var fd = (int)_handle.DangerousGetHandle();
        var position = start;
        while (position < end && runs.Count < maxRuns)
        {
            long generation;
            lock (_knownDataLock)
            {
                generation = _holesMade;
                if (position >= _knownDataStart && position < _knownDataEnd)
                {
                    var knownEnd = Math.Min(_knownDataEnd, end);
                    Add(runs, new HostRun(position, knownEnd, IsData: true));
                    position = knownEnd;
                    continue;
                }
            }

            var data = NativeMethods.lseek(fd, position, SeekData);
            if (data < 0)
            {
                // ENXIO: no data at or after position. Anything else: the file system cannot say.
                Add(runs, new HostRun(position, end, IsData: Marshal.GetLastPInvokeError() != ENXIO));
                break;
            }

            if (data > position)
            {
                var holeEnd = Math.Min(data, end);
                Add(runs, new HostRun(position, holeEnd, IsData: false));
                position = holeEnd;
                continue;
            }

            var hole = NativeMethods.lseek(fd, position, SeekHole);
            var dataEnd = hole <= position ? end : Math.Min(hole, end);
            if (hole > position)
            {
                lock (_knownDataLock)
                {
                    if (_holesMade == generation)
                    {
                        (_knownDataStart, _knownDataEnd) = (position, hole);
                    }
                }
            }

            Add(runs, new HostRun(position, dataEnd, IsData: true));
            position = dataEnd;
        }

        return runs;

        static void Add(List<HostRun> runs, HostRun run)
        {
            if (runs.Count > 0 && runs[^1].End == run.Start && runs[^1].IsData == run.IsData)
            {
                runs[^1] = runs[^1] with { End = run.End };
            }
            else
            {
                runs.Add(run);
            }
        }
    }

    /// <summary>
    /// The bytes the file system has allocated for the file (st_blocks * 512), as QEMU's
    /// file-posix raw_get_allocated_file_size reports it.
    /// </summary>
    /// <exception cref="IOException">The file system cannot tell.</exception>
    public long AllocatedBytes() => AllocatedBytesOf(_handle, Path);

    /// <summary>As <see cref="AllocatedBytes()"/>, for any open descriptor.</summary>
    /// <exception cref="IOException">The file system cannot tell.</exception>
    public static long AllocatedBytesOf(SafeFileHandle handle, string path)
    {
        ArgumentNullException.ThrowIfNull(handle);

        // struct stat differs across architectures; statx has one layout everywhere.
        var buffer = new byte[256];
        if (NativeMethods.statx((int)handle.DangerousGetHandle(), string.Empty, AtEmptyPath, StatxBlocks, buffer) != 0)
        {
            throw new IOException($"{path}: statx failed (errno {Marshal.GetLastPInvokeError()})");
        }

        // struct statx: stx_blocks is the u64 at offset 48, in 512-byte units.
        return (long)BitConverter.ToUInt64(buffer, 48) * 512;
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // Closing the descriptor releases its OFD locks.
            _handle.Dispose();
            _directWrites?.Dispose();
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>struct iovec from &lt;sys/uio.h&gt;.</summary>
internal readonly unsafe struct IoVector(byte* start, nuint length)
{
    public readonly byte* Start = start;
    public readonly nuint Length = length;
}

file static class NativeMethods
{
    [DllImport("libc", SetLastError = true)]
    internal static extern unsafe nint preadv2(int fd, IoVector* iov, int iovcnt, long offset, int flags);

    [DllImport("libc", SetLastError = true)]
    internal static extern long lseek(int fd, long offset, int whence);

    [DllImport("libc", SetLastError = true)]
    internal static extern int fdatasync(int fd);

    [DllImport("libc", SetLastError = true)]
    internal static extern int ioctl(int fd, nuint request, out ulong value);

    [DllImport("libc", SetLastError = true)]
    internal static extern int fallocate(int fd, int mode, long offset, long len);

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    internal static extern int statx(int dirfd, string pathname, int flags, uint mask, byte[] statxbuf);
}

/// <summary>A byte range of a host file that holds data, or a hole (reads as zeroes).</summary>
internal readonly record struct HostRun(long Start, long End, bool IsData);
