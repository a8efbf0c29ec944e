using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>
/// A hand-driven NBD client that sends exact bytes and reads exact replies, for the protocol's
/// bad-input cases that no real client can be made to send.
/// </summary>
public sealed class RawNbdConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawNbdConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<RawNbdConnection> ConnectAsync(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        return new RawNbdConnection(socket);
    }

    /// <summary>Reads the greeting and answers with <paramref name="clientFlags"/>; returns the handshake flags.</summary>
    public async Task<ushort> GreetAsync(uint clientFlags = 1)
    {
        var greeting = await ReadAsync(NbdWire.GreetingLength);
        Assert.Equal(NbdMagic.Init, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdMagic.Option, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        await SendAsync(BigEndian32(clientFlags));
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendOptionAsync(NbdOption option, byte[]? data = null, ulong magic = NbdMagic.Option, uint? declaredLength = null)
    {
        data ??= [];
        var frame = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(frame, magic);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(12), declaredLength ?? (uint)data.Length);
        data.CopyTo(frame, 16);
        return SendAsync(frame);
    }

    public async Task<(NbdOption Option, NbdOptionReplyType Type, byte[] Data)> ReadOptionReplyAsync()
    {
        var header = await ReadAsync(NbdWire.OptionReplyHeaderLength);
        Assert.Equal(NbdMagic.OptionReply, BinaryPrimitives.ReadUInt64BigEndian(header));
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        var data = await ReadAsync((int)length);
        return ((NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), (NbdOptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), data);
    }

    /// <summary>Sends GO for <paramref name="export"/> and reads replies up to the ACK; returns the transmission flags.</summary>
    public async Task<ushort> GoAsync(string export)
    {
        await SendOptionAsync(NbdOption.Go, InfoPayload(export));
        ushort flags = 0;
        while (true)
        {
            var (_, type, data) = await ReadOptionReplyAsync();
            if (type == NbdOptionReplyType.Ack)
            {
                return flags;
            }

            Assert.Equal(NbdOptionReplyType.Info, type);
            if (BinaryPrimitives.ReadUInt16BigEndian(data) == (ushort)NbdInfoType.Export)
            {
                flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
            }
        }
    }

    public static byte[] InfoPayload(string export, params ushort[] infos)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var data = new byte[4 + name.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + name.Length), (ushort)infos.Length);
        for (var i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + name.Length + (2 * i)), infos[i]);
        }

        return data;
    }

    public static byte[] MetaContextPayload(string export, params string[] queries)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var encoded = queries.Select(Encoding.UTF8.GetBytes).ToArray();
        var data = new byte[4 + name.Length + 4 + encoded.Sum(q => 4 + q.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data, 4);
        var at = 4 + name.Length;
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(at), (uint)encoded.Length);
        at += 4;
        foreach (var q in encoded)
        {
            BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(at), (uint)q.Length);
            q.CopyTo(data, at + 4);
            at += 4 + q.Length;
        }

        return data;
    }

    public Task SendRequestAsync(NbdCommand command, ulong offset, uint length, ulong cookie, NbdCommandFlags flags = NbdCommandFlags.None, byte[]? payload = null, uint magic = NbdMagic.Request)
    {
        var frame = new byte[NbdWire.RequestLength + (payload?.Length ?? 0)];
        new NbdRequest(flags, command, cookie, offset, length).Encode(frame);
        BinaryPrimitives.WriteUInt32BigEndian(frame, magic);
        payload?.CopyTo(frame, NbdWire.RequestLength);
        return SendAsync(frame);
    }

    /// <summary>Reads one simple reply: (error, cookie).</summary>
    public async Task<(uint Error, ulong Cookie)> ReadSimpleReplyAsync()
    {
        var reply = await ReadAsync(NbdWire.SimpleReplyLength);
        Assert.Equal(NbdMagic.SimpleReply, BinaryPrimitives.ReadUInt32BigEndian(reply));
        return (BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
    }

    /// <summary>Reads one reply of either kind: a simple reply is returned as a DONE chunk of type NONE with its error.</summary>
    public async Task<Chunk> ReadReplyAsync()
    {
        var magic = await ReadAsync(4);
        if (BinaryPrimitives.ReadUInt32BigEndian(magic) == NbdMagic.SimpleReply)
        {
            var rest = await ReadAsync(12);
            return new Chunk(NbdReplyFlags.Done, NbdReplyChunkType.None, BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4)), [], BinaryPrimitives.ReadUInt32BigEndian(rest));
        }

        Assert.Equal(NbdMagic.StructuredReply, BinaryPrimitives.ReadUInt32BigEndian(magic));
        var header = await ReadAsync(16);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        var payload = await ReadAsync((int)length);
        var type = (NbdReplyChunkType)BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
        var error = type is NbdReplyChunkType.Error or NbdReplyChunkType.ErrorOffset ? BinaryPrimitives.ReadUInt32BigEndian(payload) : 0;
        return new Chunk((NbdReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(header), type, BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4)), payload, error);
    }

    public Task SendAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    public async Task<byte[]> ReadAsync(int count)
    {
        var buffer = new byte[count];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _stream.ReadExactlyAsync(buffer, timeout.Token);
        return buffer;
    }

    /// <summary>True when the server closes the connection (end of stream) within the timeout.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            while (true)
            {
                var n = await _stream.ReadAsync(buffer, timeout.Token);
                if (n == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException)
        {
            return true;
        }
    }

    public static byte[] BigEndian32(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        return b;
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }

    /// <summary>One reply chunk.</summary>
    public sealed record Chunk(NbdReplyFlags Flags, NbdReplyChunkType Type, ulong Cookie, byte[] Payload, uint Error)
    {
        public string Message => Type is NbdReplyChunkType.Error or NbdReplyChunkType.ErrorOffset
            ? Encoding.UTF8.GetString(Payload, 6, BinaryPrimitives.ReadUInt16BigEndian(Payload.AsSpan(4)))
            : string.Empty;
    }
}
