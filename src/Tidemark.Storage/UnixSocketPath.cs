using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Tidemark.Storage;

/// <summary>
/// Makes a unix socket's path free for a listener to bind, with care for what is there: a
/// socket left by a killed server is removed (bind would fail with EADDRINUSE), anything else —
/// a disk image, another server's live socket — is refused and left alone.
/// </summary>
/// <remarks>
/// QEMU unlinks whatever is at the path before binding (util/qemu-sockets.c,
/// unix_listen_saddr); under libvirt it runs unprivileged and confined, so a typo in a backup
/// document's <c>&lt;server socket=…/&gt;</c> cannot reach the VM's disk. Tidemark's daemon runs
/// as root and the path comes from the client: an unlink there would delete a running domain's
/// image, or the daemon's own control socket. At the end, .NET's <see cref="Socket"/> removes
/// the file it bound when the listener is disposed.
/// </remarks>
public static class UnixSocketPath
{
    /// <summary>The longest path a unix socket can have, in bytes (<c>sun_path</c> of <c>struct sockaddr_un</c>).</summary>
    public const int MaxBytes = 108;

    /// <summary>Whether <paramref name="path"/> fits a unix socket's address (<see cref="MaxBytes"/> bytes of UTF-8).</summary>
    public static bool Fits(string path) => System.Text.Encoding.UTF8.GetByteCount(path) <= MaxBytes;

    /// <summary>
    /// The end point of the unix socket at <paramref name="path"/>, refused in QEMU's words
    /// when the path is too long for one (util/qemu-sockets.c, unix_listen_saddr).
    /// </summary>
    /// <exception cref="IOException">"UNIX socket path '%s' is too long".</exception>
    public static UnixDomainSocketEndPoint EndPoint(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Fits(path)
            ? new UnixDomainSocketEndPoint(path)
            : throw new IOException($"UNIX socket path '{path}' is too long");
    }

    // <fcntl.h>, <sys/stat.h> and <linux/stat.h>.
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int FileTypeMask = 0xF000;
    private const int SocketType = 0xC000;
    private const int ErrnoNoEntry = 2;

    /// <summary>Leaves <paramref name="path"/> empty: nothing there, or a unix socket nobody listens on any more (removed).</summary>
    /// <exception cref="IOException">Something other than a stale socket is at the path.</exception>
    public static void Claim(string path)
    {
        if (IsSocket(path) is not { } socket)
        {
            return;
        }

        if (!socket)
        {
            throw new IOException($"'{path}' exists and is not a socket: refusing to replace it with one");
        }

        if (IsListenedOn(path))
        {
            throw new IOException($"'{path}' is the socket of a server that is still listening");
        }

        File.Delete(path);
    }

    private static bool IsListenedOn(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            // ECONNREFUSED: no listener behind the file.
            return false;
        }
    }

    /// <summary>Whether the file at <paramref name="path"/> itself (a symlink is not followed) is a socket; null when there is none.</summary>
    private static bool? IsSocket(string path)
    {
        // struct stat differs across architectures; statx has one layout everywhere.
        var buffer = new byte[256];
        if (NativeMethods.statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == ErrnoNoEntry
                ? null
                : throw new IOException($"'{path}': cannot inspect it: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        // struct statx: stx_mode is the u16 at offset 28.
        return (BitConverter.ToUInt16(buffer, 28) & FileTypeMask) == SocketType;
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        internal static extern int statx(int dirfd, string pathname, int flags, uint mask, byte[] statxbuf);
    }
}
