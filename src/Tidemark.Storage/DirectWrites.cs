using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Storage;

/// <summary>
/// Large aligned writes into a file that bypass the page cache: a second descriptor of the
/// file opened with <c>O_DIRECT</c>, written through one aligned staging buffer. For a file
/// written once and read back later, if at all (a pull backup's scratch): its data then costs
/// no page-cache page per 4 KiB and no writeback by the kernel's flusher threads, the two costs
/// that a buffered write of data nobody reads soon pays on the same CPUs as the guest.
/// </summary>
/// <remarks>
/// <para>Coherent with the buffered descriptor: Linux writes back and drops any cached page of
/// the range around a direct write (generic_file_direct_write), so a buffered read afterwards
/// reads what was written here. What goes through here must not also be written through the
/// buffered descriptor at the same time; the image's metadata lock sees to that.</para>
/// <para>Only a way to write: nothing is durable until the image's flush (fdatasync covers the
/// file whichever descriptor wrote it). A file system that refuses <c>O_DIRECT</c> (tmpfs
/// before Linux 6.6, or a direct write it turns down as misaligned) and a request that is not
/// aligned (an image of 512-byte clusters) leave the write to the buffered descriptor.</para>
/// </remarks>
internal sealed class DirectWrites : IDisposable
{
    /// <summary>Alignment of offsets, lengths and memory: the page size, which covers every logical block size a disk reports (512 or 4096).</summary>
    public const int Alignment = 4096;

    /// <summary>The staging buffer: larger writes go in several steps of this size.</summary>
    private const int StagingBytes = 1 << 20;

    // O_WRONLY, O_CLOEXEC and O_DIRECT from <fcntl.h>: O_DIRECT differs between x86-64 and arm64.
    private const int OWrOnly = 1;
    private const int OCloexec = 0x80000;

    /// <summary>errno of an open or a write that the file system refuses for O_DIRECT.</summary>
    public const int EINVAL = 22;

    private readonly SafeFileHandle _handle;

    /// <summary>Held for a whole write: one staging buffer for all.</summary>
    private readonly Lock _lock = new();
    private readonly byte[] _buffer;
    private readonly int _start;

    private DirectWrites(SafeFileHandle handle)
    {
        _handle = handle;

        // Pinned for the object's life, so the staging area's address stays aligned.
        _buffer = GC.AllocateUninitializedArray<byte>(StagingBytes + Alignment, pinned: true);
        var address = Marshal.UnsafeAddrOfPinnedArrayElement(_buffer, 0);
        _start = (int)((Alignment - (address & (Alignment - 1))) & (Alignment - 1));
    }

    /// <summary>Opens <paramref name="path"/> again for direct writes; null where the file system refuses them.</summary>
    public static DirectWrites? Open(string path)
    {
        var direct = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;
        var fd = NativeMethods.open(path, OWrOnly | OCloexec | direct);
        if (fd < 0)
        {
            return Marshal.GetLastPInvokeError() == EINVAL ? null
                : throw new IOException($"{path}: Could not open for direct writes: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        return new DirectWrites(new SafeFileHandle(fd, ownsHandle: true));
    }

    /// <summary>Whether a write of <paramref name="length"/> bytes at <paramref name="offset"/> can go through here.</summary>
    public static bool Fits(long offset, long length)
        => length > 0 && offset % Alignment == 0 && length % Alignment == 0;

    /// <summary>Writes the pieces one after the other from <paramref name="offset"/>; <see cref="Fits"/> must hold for their total.</summary>
    public void Write(long offset, IReadOnlyList<ReadOnlyMemory<byte>> data)
    {
        lock (_lock)
        {
            WriteLocked(offset, data);
        }
    }

    private void WriteLocked(long offset, IReadOnlyList<ReadOnlyMemory<byte>> data)
    {
        var staging = _buffer.AsSpan(_start, StagingBytes);
        var staged = 0;
        foreach (var piece in data)
        {
            for (var span = piece.Span; !span.IsEmpty;)
            {
                var take = Math.Min(span.Length, StagingBytes - staged);
                span[..take].CopyTo(staging[staged..]);
                span = span[take..];
                staged += take;
                if (staged == StagingBytes)
                {
                    RandomAccess.Write(_handle, staging, offset);
                    offset += staged;
                    staged = 0;
                }
            }
        }

        if (staged > 0)
        {
            RandomAccess.Write(_handle, staging[..staged], offset);
        }
    }

    public void Dispose() => _handle.Dispose();

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
        internal static extern int open([MarshalAs(UnmanagedType.LPStr)] string path, int flags);
    }
}
