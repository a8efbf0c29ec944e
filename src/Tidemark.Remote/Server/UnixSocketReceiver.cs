using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Remote.Server;

/// <summary>
/// The reading side of a unix stream socket, read with <c>recvmsg</c>: the file descriptors
/// that arrive with the bytes (SCM_RIGHTS) are kept in arrival order for the calls that carry
/// them (CALL_WITH_FDS). A plain read would drop them: the kernel closes descriptors attached
/// to bytes read without room for ancillary data.
/// </summary>
/// <remarks>
/// <para>libvirt sends each descriptor with one data byte after its call's message
/// (virsocket.c), and Linux never joins bytes that carry descriptors to the bytes after them
/// in one read; so by the time a call's descriptor bytes have been read, its descriptors are
/// queued here.</para>
/// <para>A stream read on demand (by a <see cref="PipeReader"/>), not a pump: the connection
/// reads the socket only when it is ready for more, so a client that floods calls is slowed by
/// its own socket.</para>
/// </remarks>
internal sealed class UnixSocketReceiver : Stream
{
    // Room for a whole SCM_RIGHTS message of the most descriptors one call may carry.
    private const int ControlSize = 16 + (sizeof(int) * Protocol.RemoteWire.MaxFdsPerMessage);

    private const int SolSocket = 1;
    private const int ScmRights = 1;
    private const int DontWait = 0x40; // MSG_DONTWAIT
    private const int CloseOnExec = 0x40000000; // MSG_CMSG_CLOEXEC
    private const int ControlTruncated = 0x8; // MSG_CTRUNC
    private const int WouldBlock = 11; // EAGAIN
    private const int Interrupted = 4; // EINTR

    private readonly Socket _socket;
    private readonly Lock _lock = new();
    private readonly Queue<SafeFileHandle> _fds = new();

    /// <param name="socket">The connection's socket, which the caller owns and closes.</param>
    public UnixSocketReceiver(Socket socket)
    {
        _socket = socket;
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Reads what is there, waiting for something when nothing is; 0 at the end of the stream.</summary>
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var received = Receive(buffer);
            if (received >= 0)
            {
                return received;
            }

            // Nothing to read: wait until there is (a zero-byte receive completes when data or the end arrives).
            await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <summary>Takes the <paramref name="count"/> oldest received descriptors, or throws when fewer arrived.</summary>
    /// <exception cref="RemoteProtocolException">Fewer than <paramref name="count"/> descriptors arrived.</exception>
    public SafeFileHandle[] TakeFds(int count)
    {
        lock (_lock)
        {
            if (_fds.Count < count)
            {
                throw new RemoteProtocolException(RemoteProtocolErrorReason.UnmatchedFds, $"a call announced {count} file descriptors, {_fds.Count} arrived");
            }

            var taken = new SafeFileHandle[count];
            for (var i = 0; i < count; i++)
            {
                taken[i] = _fds.Dequeue();
            }

            return taken;
        }
    }

    /// <summary>Closes the descriptors no call took (the socket is the caller's).</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                while (_fds.TryDequeue(out var fd))
                {
                    fd.Dispose();
                }
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>One non-blocking <c>recvmsg</c>: the bytes received, 0 at the end of the stream, -1 when nothing is there yet.</summary>
    /// <exception cref="SocketException">The socket failed.</exception>
    /// <exception cref="RemoteProtocolException">Descriptors were lost (more than a call may carry, at once) or pile up with no call taking them.</exception>
    private unsafe int Receive(Memory<byte> memory)
    {
        var control = stackalloc byte[ControlSize];
        using var pin = memory.Pin();
        var vector = new IoVector { Base = pin.Pointer, Length = (nuint)memory.Length };
        var header = new MessageHeader { Vector = &vector, VectorLength = 1, Control = control, ControlLength = ControlSize };
        nint received;
        var added = false;
        try
        {
            _socket.SafeHandle.DangerousAddRef(ref added);
            do
            {
                received = ReceiveMessage((int)_socket.SafeHandle.DangerousGetHandle(), &header, DontWait | CloseOnExec);
            }
            while (received < 0 && Marshal.GetLastPInvokeError() == Interrupted);
        }
        finally
        {
            if (added)
            {
                _socket.SafeHandle.DangerousRelease();
            }
        }

        if (received < 0)
        {
            var error = Marshal.GetLastPInvokeError();
            return error == WouldBlock ? -1 : throw new SocketException(error);
        }

        KeepFds(&header);
        if ((header.Flags & ControlTruncated) != 0)
        {
            throw new RemoteProtocolException(RemoteProtocolErrorReason.UnmatchedFds, $"file descriptors were lost: more than {Protocol.RemoteWire.MaxFdsPerMessage} arrived at once");
        }

        return (int)received;
    }

    /// <summary>Queues the descriptors of every SCM_RIGHTS message (struct cmsghdr: length, level, type, then the ints, each message 8-byte aligned).</summary>
    private unsafe void KeepFds(MessageHeader* header)
    {
        var offset = 0;
        var length = (int)header->ControlLength;
        lock (_lock)
        {
            while (offset + 16 <= length)
            {
                var control = (byte*)header->Control + offset;
                var size = (int)*(nuint*)control;
                if (size < 16 || offset + size > length)
                {
                    break;
                }

                if (*(int*)(control + 8) == SolSocket && *(int*)(control + 12) == ScmRights)
                {
                    for (var at = 16; at + sizeof(int) <= size; at += sizeof(int))
                    {
                        _fds.Enqueue(new SafeFileHandle(*(int*)(control + at), ownsHandle: true));
                    }
                }

                offset += (size + 7) & ~7;
            }

            if (_fds.Count > Protocol.RemoteWire.MaxFdsPerMessage)
            {
                throw new RemoteProtocolException(RemoteProtocolErrorReason.UnmatchedFds, $"{_fds.Count} file descriptors arrived that no call took");
            }
        }
    }

    [DllImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static extern unsafe nint ReceiveMessage(int socket, MessageHeader* message, int flags);

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVector
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>struct msghdr (x86-64 and arm64 Linux).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vector;
        public nuint VectorLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }
}
