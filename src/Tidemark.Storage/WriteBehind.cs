using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Storage;

/// <summary>
/// Streams a file being written front to back (a copy into a new image) to the disk as it goes,
/// instead of leaving it all dirty in the page cache for one fsync at the end: writeback of what
/// was written is started at once (<c>sync_file_range(SYNC_FILE_RANGE_WRITE)</c>), and what lies
/// more than <see cref="Window"/> behind the furthest write is waited for and dropped from the
/// page cache (<c>POSIX_FADV_DONTNEED</c>), the "write-behind" of databases and <c>dd
/// oflag=nocache</c>.
/// </summary>
/// <remarks>
/// Why: the final fsync then finds almost nothing left to write, so the disk works while the copy
/// runs; and the copy reuses the same few dozen MiB of page cache instead of taking a fresh page
/// for every byte written. Fresh pages are the expensive part of a large buffered write on a
/// virtual machine whose host takes back free guest memory (free page reporting, ballooning):
/// each first touch faults on the host. Writing 512 MiB and fsyncing it took 6–9 s that way and
/// 0.5–1.2 s with write-behind on the same machine in the same minute.
/// Only a hint: nothing here makes data durable (the caller's fsync does), a write that lands
/// behind the window stays dirty until that fsync, and a writeback error is still reported by
/// the fsync (Linux keeps it for every open file description, errseq, since 4.13).
/// </remarks>
internal sealed class WriteBehind
{
    /// <summary>Bytes left dirty behind the furthest write: room for the requests still in flight and for writeback to finish before it is waited for.</summary>
    private const long Window = 32L << 20;

    /// <summary>Writeback is started, and waited for, in steps of at least this many bytes.</summary>
    private const long Step = 8L << 20;

    // <fcntl.h> on Linux.
    private const uint SyncFileRangeWaitBefore = 1;
    private const uint SyncFileRangeWrite = 2;
    private const uint SyncFileRangeWaitAfter = 4;

    private readonly SafeFileHandle _handle;
    private readonly Lock _lock = new();
    private long _end;
    private long _started;
    private long _settled;
    private bool _unsupported;

    public WriteBehind(SafeFileHandle handle, long start)
    {
        _handle = handle;
        _end = _started = _settled = start;
    }

    /// <summary>Called after <paramref name="offset"/>..+<paramref name="length"/> was written.</summary>
    public void Written(long offset, long length)
    {
        long startFrom = 0, startTo = 0, settleFrom = 0, settleTo = 0;
        lock (_lock)
        {
            if (_unsupported)
            {
                return;
            }

            _end = Math.Max(_end, offset + length);
            if (_end - _started >= Step)
            {
                (startFrom, startTo, _started) = (_started, _end, _end);
            }

            if (_end - Window - _settled >= Step)
            {
                (settleFrom, settleTo, _settled) = (_settled, _end - Window, _end - Window);
            }
        }

        // Several writers may each take a range here; the ranges are disjoint.
        var fd = (int)_handle.DangerousGetHandle();
        if (startTo > startFrom && NativeMethods.sync_file_range(fd, startFrom, startTo - startFrom, SyncFileRangeWrite) != 0)
        {
            Stop();
            return;
        }

        if (settleTo > settleFrom)
        {
            if (NativeMethods.sync_file_range(fd, settleFrom, settleTo - settleFrom, SyncFileRangeWaitBefore | SyncFileRangeWrite | SyncFileRangeWaitAfter) != 0)
            {
                Stop();
                return;
            }

            PageCacheAdvice.DontNeed(fd, settleFrom, settleTo - settleFrom);
        }
    }

    /// <summary>A file system (or kernel) that refuses the hint, or a writeback error: leave the rest to the caller's fsync, which reports any error.</summary>
    private void Stop()
    {
        lock (_lock)
        {
            _unsupported = true;
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        internal static extern int sync_file_range(int fd, long offset, long nbytes, uint flags);
    }
}
