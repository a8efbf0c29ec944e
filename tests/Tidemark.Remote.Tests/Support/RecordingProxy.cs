using System.Buffers.Binary;
using System.Net.Sockets;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests.Support;

/// <summary>
/// A unix-socket proxy between a client and a server that records every byte the client
/// sends, so two clients' wire traffic can be compared message by message.
/// </summary>
internal sealed class RecordingProxy : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly string _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly List<Task> _pumps = [];
    private readonly MemoryStream _fromClients = new();

    public RecordingProxy(TempDirectory dir, string upstream)
    {
        _upstream = upstream;
        SocketPath = dir.File($"proxy-{Guid.NewGuid():N}.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(4);
        _loop = AcceptAsync();
    }

    public string SocketPath { get; }

    /// <summary>The client-to-server bytes, cut into whole messages.</summary>
    public List<byte[]> ClientMessages()
    {
        byte[] all;
        lock (_fromClients)
        {
            all = _fromClients.ToArray();
        }

        var messages = new List<byte[]>();
        for (var at = 0; at + 4 <= all.Length;)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(all.AsSpan(at));
            messages.Add(all.AsSpan(at, length).ToArray());
            at += length;
        }

        return messages;
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptAsync(_stop.Token);
                var server = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await server.ConnectAsync(new UnixDomainSocketEndPoint(_upstream));
                lock (_pumps)
                {
                    _pumps.Add(PumpAsync(client, server, record: true));
                    _pumps.Add(PumpAsync(server, client, record: false));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool record)
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer, _stop.Token);
                if (n == 0)
                {
                    break;
                }

                if (record)
                {
                    lock (_fromClients)
                    {
                        _fromClients.Write(buffer, 0, n);
                    }
                }

                await to.SendAsync(buffer.AsMemory(0, n), _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            try
            {
                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
        Task[] pumps;
        lock (_pumps)
        {
            pumps = [.. _pumps];
        }

        await Task.WhenAll(pumps);
        _stop.Dispose();
    }
}
