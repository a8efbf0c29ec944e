using System.Buffers.Binary;
using System.Net.Sockets;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Cli.Tests;

/// <summary>
/// A fixed-newstyle NBD server on a unix socket whose export name, description and size are
/// whatever bytes a test chooses, including ones no real server would send: NUL, control
/// characters, bytes that are not UTF-8, a size of 2^64-1. It answers LIST, INFO, GO and the
/// meta-context listings (with none), refuses other options, and ends a connection at DISC.
/// </summary>
internal sealed class ScriptedNbdServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly byte[] _name;
    private readonly byte[] _description;
    private readonly ulong _size;

    public ScriptedNbdServer(string socketPath, byte[] name, byte[] description, ulong size)
    {
        _name = name;
        _description = description;
        _size = size;
        SocketPath = socketPath;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(8);
        _accepting = AcceptAsync();
    }

    public string SocketPath { get; }

    public string Uri => $"nbd+unix:///?socket={SocketPath}";

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accepting;
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        var connections = new List<Task>();
        try
        {
            while (true)
            {
                connections.Add(ServeAsync(await _listener.AcceptAsync(_stop.Token)));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }

        await Task.WhenAll(connections);
    }

    private async Task ServeAsync(Socket socket)
    {
        using var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            var greeting = new byte[NbdWire.GreetingLength];
            BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdMagic.Init);
            BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdMagic.Option);
            BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), 3);
            await stream.WriteAsync(greeting, _stop.Token);
            await ReadAsync(stream, 4);
            while (true)
            {
                var header = await ReadAsync(stream, NbdWire.OptionHeaderLength);
                var option = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
                await ReadAsync(stream, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
                switch (option)
                {
                    case NbdOption.Info or NbdOption.Go:
                        var export = new byte[12];
                        BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), _size);
                        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), 1);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Info, export);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Info, [0, (byte)NbdInfoType.Name, .. _name]);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Info, [0, (byte)NbdInfoType.Description, .. _description]);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Ack, []);
                        if (option == NbdOption.Go)
                        {
                            await TransmitAsync(stream);
                            return;
                        }

                        break;
                    case NbdOption.List:
                        var length = new byte[4];
                        BinaryPrimitives.WriteUInt32BigEndian(length, (uint)_name.Length);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Server, [.. length, .. _name, .. _description]);
                        await ReplyAsync(stream, option, NbdOptionReplyType.Ack, []);
                        break;
                    case NbdOption.ListMetaContext or NbdOption.SetMetaContext:
                        await ReplyAsync(stream, option, NbdOptionReplyType.Ack, []);
                        break;
                    case NbdOption.Abort:
                        await ReplyAsync(stream, option, NbdOptionReplyType.Ack, []);
                        return;
                    default:
                        await ReplyAsync(stream, option, NbdOptionReplyType.ErrUnsupported, []);
                        break;
                }
            }
        }
        catch (Exception e) when (e is IOException or EndOfStreamException or OperationCanceledException or SocketException)
        {
        }
    }

    // Every request but DISC gets EINVAL.
    private async Task TransmitAsync(NetworkStream stream)
    {
        while (true)
        {
            var request = await ReadAsync(stream, NbdWire.RequestLength);
            if (BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(6)) == (ushort)NbdCommand.Disconnect)
            {
                return;
            }

            var reply = new byte[NbdWire.SimpleReplyLength];
            BinaryPrimitives.WriteUInt32BigEndian(reply, NbdMagic.SimpleReply);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(4), 22);
            request.AsSpan(8, 8).CopyTo(reply.AsSpan(8));
            await stream.WriteAsync(reply, _stop.Token);
        }
    }

    private async Task ReplyAsync(NetworkStream stream, NbdOption option, NbdOptionReplyType type, byte[] data)
    {
        var header = new byte[NbdWire.OptionReplyHeaderLength];
        BinaryPrimitives.WriteUInt64BigEndian(header, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), (uint)data.Length);
        await stream.WriteAsync(header, _stop.Token);
        await stream.WriteAsync(data, _stop.Token);
    }

    private async Task<byte[]> ReadAsync(NetworkStream stream, int count)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer, _stop.Token);
        return buffer;
    }
}
