using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Tidemark.Nbd.Server;

/// <summary>
/// A server connection's socket as a stream whose every operation is one blocking system call
/// on the calling thread; the asynchronous methods complete before they return. The connection
/// runs on a thread of its own (<see cref="NbdServer"/>), so a request is read, written to the
/// image and answered there, with no thread hand-off on the way.
/// </summary>
/// <remarks>
/// Why not .NET's asynchronous sockets: the first asynchronous operation registers the
/// descriptor with the runtime's epoll thread, and from then on each arrival of data wakes that
/// thread, which queues a thread-pool work item, which wakes a worker to run the continuation.
/// A guest's 4 KiB write paid for those wake-ups on a 2-CPU host about a third of the server's
/// CPU time: random 4 KiB writes at queue depth 16 went from about 50,000 to about 73,000 IOPS
/// with the continuations run on the epoll thread instead (bench/engine/README.md). This stream
/// never makes an asynchronous socket call, so the descriptor stays blocking and unregistered.
/// <para>
/// A blocked receive or send does not see a cancellation token: each call registers one that
/// shuts the socket down (<see cref="Abort"/>), which returns the blocked call at once; the call
/// then reports the cancellation. Cancelling a read or write of a connection ends the
/// connection, as it always did.
/// </para>
/// </remarks>
internal sealed class BlockingSocketStream : Stream
{
    private readonly Socket _socket;

    public BlockingSocketStream(Socket socket)
    {
        _socket = socket;
        _socket.Blocking = true;
    }

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        try
        {
            return _socket.Receive(buffer, SocketFlags.None);
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot read from the connection: {e.Message}", e);
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        try
        {
            int read;
            using (AbortOn(cancellationToken))
            {
                read = Read(buffer.Span);
            }

            // A shut-down socket reads as the end of the stream: report why it ended.
            return cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled<int>(cancellationToken) : ValueTask.FromResult(read);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException<int>(e);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        try
        {
            while (!buffer.IsEmpty)
            {
                buffer = buffer[_socket.Send(buffer, SocketFlags.None)..];
            }
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot write to the connection: {e.Message}", e);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            using (AbortOn(cancellationToken))
            {
                Write(buffer.Span);
            }

            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException(e);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>
    /// Sends the elements in order, file ranges with sendfile(2) straight from the page cache.
    /// Returns the bytes sent: fewer than asked when a file ended early.
    /// </summary>
    /// <exception cref="IOException">The transport failed (or <paramref name="cancellationToken"/> shut it down).</exception>
    public long SendPackets(IReadOnlyList<SendPacketsElement> elements, CancellationToken cancellationToken)
    {
        using var abort = AbortOn(cancellationToken);
        long sent = 0;
        foreach (var element in elements)
        {
            if (element.FileStream is { } file)
            {
                var count = SendFile(file, element.OffsetLong, element.Count);
                sent += count;
                if (count < element.Count)
                {
                    return sent;
                }
            }
            else if (element.Buffer is { } buffer)
            {
                Write(buffer.AsSpan(element.Offset, element.Count));
                sent += element.Count;
            }
            else if (element.MemoryBuffer is { } memory)
            {
                Write(memory.Span);
                sent += memory.Length;
            }
        }

        return sent;
    }

    private long SendFile(FileStream file, long offset, int count)
    {
        var socketHandle = _socket.SafeHandle;
        var fileHandle = file.SafeFileHandle;
        var (socketHeld, fileHeld) = (false, false);
        try
        {
            socketHandle.DangerousAddRef(ref socketHeld);
            fileHandle.DangerousAddRef(ref fileHeld);
            var socketFd = (int)socketHandle.DangerousGetHandle();
            var fileFd = (int)fileHandle.DangerousGetHandle();
            long done = 0;
            while (done < count)
            {
                var n = NativeMethods.sendfile(socketFd, fileFd, ref offset, (nuint)(count - done));
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    throw new IOException($"cannot write to the connection: sendfile failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                if (n == 0)
                {
                    break;
                }

                done += n;
            }

            return done;
        }
        finally
        {
            if (fileHeld)
            {
                fileHandle.DangerousRelease();
            }

            if (socketHeld)
            {
                socketHandle.DangerousRelease();
            }
        }
    }

    private const int EINTR = 4;

    /// <summary>Ends the connection: a receive or send blocked on it returns at once.</summary>
    public void Abort()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }
    }

    private CancellationTokenRegistration AbortOn(CancellationToken cancellationToken)
        => cancellationToken.CanBeCanceled ? cancellationToken.UnsafeRegister(static stream => ((BlockingSocketStream)stream!).Abort(), this) : default;

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _socket.Dispose();
        }

        base.Dispose(disposing);
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        internal static extern nint sendfile(int outFd, int inFd, ref long offset, nuint count);
    }
}
