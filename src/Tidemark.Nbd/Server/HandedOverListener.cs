using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Tidemark.Nbd.Server;

/// <summary>
/// Accepting on a listening socket handed over by someone else (<see cref="NbdServerOptions.Listeners"/>)
/// with <c>poll</c> and <c>accept4</c>, never through .NET's async sockets.
/// </summary>
/// <remarks>
/// A handed-over socket is usually a duplicate of a descriptor its owner keeps, and may be
/// handed over again later. .NET's async sockets register the descriptor with epoll, and epoll
/// keeps a registration for as long as the socket itself is open anywhere, keyed by the socket and
/// the descriptor number: once this server closes its duplicate, the next duplicate that gets
/// the same number cannot be registered (EEXIST) and its accepts fail. Polling keeps nothing
/// registered. The wait is bounded so that a stopping server notices within
/// <see cref="PollMilliseconds"/>.
/// </remarks>
internal static class HandedOverListener
{
    public const int PollMilliseconds = 100;

    private const short PollIn = 0x1;
    private const int CloseOnExec = 0x80000; // SOCK_CLOEXEC
    private const int Interrupted = 4; // EINTR
    private const int WouldBlock = 11; // EAGAIN
    private const int ConnectionAborted = 103; // ECONNABORTED

    /// <summary>Waits up to <see cref="PollMilliseconds"/> for a connection and accepts it; null when none came (or another accepter took it).</summary>
    /// <exception cref="SocketException">The listener failed (closed, not listening).</exception>
    public static Socket? TryAccept(Socket listener)
    {
        var added = false;
        try
        {
            listener.SafeHandle.DangerousAddRef(ref added);
            var fd = (int)listener.SafeHandle.DangerousGetHandle();
            var poll = new PollDescriptor { Descriptor = fd, Events = PollIn };
            var ready = Poll(ref poll, 1, PollMilliseconds);
            if (ready <= 0)
            {
                return ready == 0 || Marshal.GetLastPInvokeError() == Interrupted ? null : throw new SocketException(Marshal.GetLastPInvokeError());
            }

            var accepted = Accept(fd, IntPtr.Zero, IntPtr.Zero, CloseOnExec);
            if (accepted < 0)
            {
                var error = Marshal.GetLastPInvokeError();
                return error is Interrupted or WouldBlock or ConnectionAborted ? null : throw new SocketException(error);
            }

            return new Socket(new SafeSocketHandle(accepted, ownsHandle: true));
        }
        finally
        {
            if (added)
            {
                listener.SafeHandle.DangerousRelease();
            }
        }
    }

    [DllImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static extern int Poll(ref PollDescriptor descriptors, nuint count, int timeout);

    [DllImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static extern int Accept(int socket, IntPtr address, IntPtr addressLength, int flags);

    /// <summary>struct pollfd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Descriptor;
        public short Events;
        public short ReturnedEvents;
    }
}
