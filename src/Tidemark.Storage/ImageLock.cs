using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Storage;

/// <summary>
/// QEMU's image locking protocol (file-posix, formats.md §1.8), so that Tidemark and QEMU never
/// both write one image. Each holder takes shared OFD locks on single bytes of the image file:
/// byte <c>100 + i</c> means "I use permission i", byte <c>200 + i</c> means "I do not let others
/// have permission i". A holder conflicts with anyone holding a byte it would need exclusively.
/// </summary>
/// <remarks>
/// Observed with qemu-io 7.2 (<c>/proc/locks</c>): read-write opens hold 100, 101, 103 and deny
/// 201, 203; read-only opens hold 100 and deny 201, 203. Tidemark takes exactly the same bytes.
/// The locks are taken first and the conflict test follows, so two openers racing each other
/// cannot both miss the other. OFD locks belong to the open file description, so a second open of
/// the same file in this process conflicts like a second process would.
/// </remarks>
internal static class ImageLock
{
    // QEMU permission bits (include/block/block-common.h BLK_PERM_*): the index i in 100 + i / 200 + i.
    private const int PermConsistentRead = 0;
    private const int PermWrite = 1;
    private const int PermResize = 3;

    private const int PermBase = 100;
    private const int SharedBase = 200;

    // <fcntl.h> on Linux.
    private const int FOfdGetlk = 36;
    private const int FOfdSetlk = 37;
    private const short FRdlck = 0;
    private const short FWrlck = 1;
    private const short FUnlck = 2;
    private const short SeekSet = 0;

    private static readonly string[] PermissionNames = ["consistent read", "write", "write unchanged", "resize"];

    /// <summary>Takes the read-only or read-write lock set, or throws naming the conflicting permission.</summary>
    /// <param name="handle">The open image file.</param>
    /// <param name="path">The file's path, for the error.</param>
    /// <param name="readOnly">Hold the read permission only.</param>
    /// <param name="shareWrites">
    /// Deny nothing to others, as a raw image behind a device with QEMU's <c>share-rw=on</c>
    /// (libvirt's <c>&lt;shareable/&gt;</c>) does: observed with QEMU 7.2's virtio-blk, it holds
    /// 100 and 101 read-write, 100 read-only, and no byte from 200 on. Others' denials still apply.
    /// </param>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Locked"/>: another holder conflicts.</exception>
    public static void Acquire(SafeFileHandle handle, string path, bool readOnly, bool shareWrites = false)
    {
        int[] held = readOnly ? [PermConsistentRead] : [PermConsistentRead, PermWrite, PermResize];
        int[] denied = shareWrites ? [] : [PermWrite, PermResize];
        var fd = (int)handle.DangerousGetHandle();
        foreach (var perm in held)
        {
            SetShared(fd, PermBase + perm, path);
        }

        foreach (var perm in denied)
        {
            SetShared(fd, SharedBase + perm, path);
        }

        // A conflict can be a ghost: a lock held by an open file description that was closed a
        // moment ago but is still shared with a child process between fork and exec (this
        // process starts peers from other threads; O_CLOEXEC only drops the copy at exec). So a
        // conflict is looked at again for a short while before it is believed.
        for (var attempt = 0; ; attempt++)
        {
            var conflict = FindConflict(fd, held, denied, path);
            if (conflict is null)
            {
                return;
            }

            if (attempt == GhostRetries)
            {
                throw conflict;
            }

            Thread.Sleep(GhostRetryDelay);
        }
    }

    /// <summary>
    /// Stops denying others the write and resize permissions on <paramref name="handle"/> (a
    /// read-only holder about to be reopened read-write, as QEMU's reopen changes its lock bytes
    /// before the new permissions are taken).
    /// </summary>
    public static void ReleaseDenials(SafeFileHandle handle)
    {
        var fd = (int)handle.DangerousGetHandle();
        foreach (var perm in new[] { PermWrite, PermResize })
        {
            Unlock(fd, SharedBase + perm);
        }
    }

    /// <summary>Takes back the denials <see cref="ReleaseDenials"/> gave up, or throws naming the conflict (someone took the write permission meanwhile).</summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Locked"/>: another holder now writes the file.</exception>
    public static void RestoreDenials(SafeFileHandle handle, string path)
        => Deny((int)handle.DangerousGetHandle(), [PermWrite, PermResize], path);

    /// <summary>
    /// Denies others the write permission on a holder that shared it (<see cref="Acquire"/>
    /// with shareWrites), or throws naming the conflict and denies nothing: QEMU's
    /// copy-before-write filter unshares WRITE on the node it is put above, so no one else
    /// writes under a backup's point in time.
    /// </summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.Locked"/>: another holder writes the file.</exception>
    public static void DenyWrites(SafeFileHandle handle, string path)
    {
        var fd = (int)handle.DangerousGetHandle();
        try
        {
            Deny(fd, [PermWrite], path);
        }
        catch (StorageException)
        {
            Unlock(fd, SharedBase + PermWrite);
            throw;
        }
    }

    /// <summary>Gives up the denial <see cref="DenyWrites"/> took.</summary>
    public static void AllowWrites(SafeFileHandle handle) => Unlock((int)handle.DangerousGetHandle(), SharedBase + PermWrite);

    private static void Deny(int fd, int[] denied, string path)
    {
        foreach (var perm in denied)
        {
            SetShared(fd, SharedBase + perm, path);
        }

        for (var attempt = 0; ; attempt++)
        {
            var conflict = FindConflict(fd, [], denied, path);
            if (conflict is null)
            {
                return;
            }

            if (attempt == GhostRetries)
            {
                throw conflict;
            }

            Thread.Sleep(GhostRetryDelay);
        }
    }

    private static void Unlock(int fd, long offset)
    {
        var request = new Flock { Type = FUnlck, Whence = SeekSet, Start = offset, Length = 1 };
        _ = NativeMethods.fcntl(fd, FOfdSetlk, ref request);
    }

    // 20 × 10 ms: far longer than a fork-to-exec window, short enough for a real conflict to fail promptly.
    private const int GhostRetries = 20;
    private static readonly TimeSpan GhostRetryDelay = TimeSpan.FromMilliseconds(10);

    // Someone who denies a permission we hold, or holds one we deny.
    private static StorageException? FindConflict(int fd, int[] held, int[] denied, string path)
    {
        foreach (var perm in held)
        {
            if (IsLockedByOther(fd, SharedBase + perm))
            {
                return new StorageException(StorageErrorReason.Locked, $"{path}: Failed to get \"{PermissionNames[perm]}\" lock: is another process using the image?");
            }
        }

        foreach (var perm in denied)
        {
            if (IsLockedByOther(fd, PermBase + perm))
            {
                return new StorageException(StorageErrorReason.Locked, $"{path}: Failed to get shared \"{PermissionNames[perm]}\" lock: is another process using the image?");
            }
        }

        return null;
    }

    private static void SetShared(int fd, long offset, string path)
    {
        var request = new Flock { Type = FRdlck, Whence = SeekSet, Start = offset, Length = 1 };
        if (NativeMethods.fcntl(fd, FOfdSetlk, ref request) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new StorageException(StorageErrorReason.Locked, $"{path}: cannot lock byte {offset} (errno {errno}): is another process using the image?");
        }
    }

    private static bool IsLockedByOther(int fd, long offset)
    {
        var request = new Flock { Type = FWrlck, Whence = SeekSet, Start = offset, Length = 1 };
        if (NativeMethods.fcntl(fd, FOfdGetlk, ref request) != 0)
        {
            // The file system cannot test locks (some network file systems): nothing to learn.
            return false;
        }

        return request.Type != FUnlck;
    }

    // struct flock on 64-bit Linux.
    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        internal static extern int fcntl(int fd, int cmd, ref Flock lk);
    }
}
