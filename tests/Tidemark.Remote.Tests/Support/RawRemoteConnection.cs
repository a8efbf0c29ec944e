using System.Buffers.Binary;
using System.Net.Sockets;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Tests.Support;

/// <summary>A raw socket to a remote server: exact bytes out, whole messages (or end of stream) in.</summary>
internal sealed class RawRemoteConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private uint _serial;

    private RawRemoteConnection(Socket socket)
    {
        _socket = socket;
    }

    public static async Task<RawRemoteConnection> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawRemoteConnection(socket);
    }

    public Socket Socket => _socket;

    public async Task SendAsync(ReadOnlyMemory<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var n = await _socket.SendAsync(bytes);
            bytes = bytes[n..];
        }
    }

    /// <summary>Sends a REMOTE call and returns its serial.</summary>
    public async Task<uint> CallAsync(RemoteProcedure procedure, Action<XdrWriter>? args = null)
    {
        var serial = _serial++;
        var message = MessageBuilder.Remote(procedure, RemoteMessageType.Call, serial);
        args?.Invoke(message.Payload);
        await SendAsync(message.Finish());
        return serial;
    }

    /// <summary>CONNECT_OPEN as virsh sends it (with VIR_CONNECT_RO = 1 in <paramref name="flags"/> as virsh -r does), and its reply.</summary>
    public async Task OpenAsync(uint flags = 0)
    {
        await CallAsync(RemoteProcedure.ConnectOpen, w =>
        {
            w.WriteOptionalString("qemu:///system", 100);
            w.WriteUInt32(flags);
        });
        var reply = await ReadAsync();
        Assert.NotNull(reply);
        Assert.Equal(RemoteMessageStatus.Ok, reply.Header.Status);
    }

    /// <summary>The next whole message, or null when the server closed the connection.</summary>
    public async Task<RemoteMessage?> ReadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        var header = new byte[RemoteWire.HeaderLength];
        if (!await ReadExactlyAsync(header, cts.Token))
        {
            return null;
        }

        var parsed = MessageHeader.Read(header);
        var payload = new byte[parsed.PayloadLength];
        return await ReadExactlyAsync(payload, cts.Token) ? new RemoteMessage(parsed, payload) : null;
    }

    /// <summary>The remote_error of an ERROR reply.</summary>
    public static RemoteErrorRecord ErrorOf(RemoteMessage reply)
    {
        Assert.Equal(RemoteMessageStatus.Error, reply.Header.Status);
        var reader = new XdrReader(reply.Payload.Span);
        return RemoteErrorRecord.Read(ref reader);
    }

    private async Task<bool> ReadExactlyAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int n;
            try
            {
                n = await _socket.ReceiveAsync(buffer, cancellationToken);
            }
            catch (SocketException)
            {
                return false;
            }

            if (n == 0)
            {
                return false;
            }

            buffer = buffer[n..];
        }

        return true;
    }

    public static byte[] Header(uint length, uint program, uint procedure, uint type = 0, uint serial = 0, uint status = 0)
    {
        var bytes = new byte[RemoteWire.HeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, length);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), program);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), procedure);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), type);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(20), serial);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(24), status);
        return bytes;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
