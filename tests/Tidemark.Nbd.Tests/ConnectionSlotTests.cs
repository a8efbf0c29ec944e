using System.Net.Sockets;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// Clients that connect and then say nothing, or stop halfway through the handshake, cannot
/// lock others out: they hold a slot for at most the handshake timeout, and the real clients
/// queued behind them (nbdinfo, nbdsh, qemu-img) are served in turn, as qemu-nbd 7.2 serves them.
/// </summary>
public sealed class ConnectionSlotTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SilentSockets_HoldingEverySlot_DoNotLockOutRealClients()
    {
        using var dir = new TempDirectory("nbd-silent");
        var path = dir.File("disk.raw");
        await File.WriteAllBytesAsync(path, new byte[1 << 20], Token);
        await using var image = RawImage.Open(path, readOnly: true);
        var limits = new NbdServerLimits { MaxConnections = 4, HandshakeTimeout = TimeSpan.FromSeconds(1) };
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("vda", image)], limits: limits);

        // Four sockets that connect and send nothing, and a fifth that sends half of its flags.
        var silent = new List<Socket>();
        for (var i = 0; i < 4; i++)
        {
            silent.Add(await ConnectRawAsync(server.SocketPath));
        }

        await using var halfway = await RawNbdConnection.ConnectAsync(server.SocketPath);
        try
        {
            var uri = server.UnixUri("vda");
            var nbdinfo = Peer.RunAsync("nbdinfo", ["--size", uri]);
            var nbdsh = Nbdsh.RunAsync(uri, "print(h.get_size())");
            var qemuImg = Peer.RunAsync("qemu-img", ["info", "--output=json", "-f", "raw", uri]);
            await halfway.ReadAsync(Protocol.NbdWire.GreetingLength);
            await halfway.SendAsync([0, 0]);

            Assert.Equal("1048576\n", (await nbdinfo).EnsureSuccess().Stdout);
            Assert.Equal("1048576\n", (await nbdsh).EnsureSuccess().Stdout);
            Assert.Contains("\"virtual-size\": 1048576", (await qemuImg).EnsureSuccess().Stdout, StringComparison.Ordinal);
            Assert.True(await server.Log.WaitForAsync("unix client: handshake not finished within 00:00:01"));
            Assert.True(await halfway.IsClosedByServerAsync());
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task ClientThatLeftWhileWaiting_DoesNotTakeTheSlot()
    {
        using var dir = new TempDirectory("nbd-left");
        await using var image = RawImage.Create(dir.File("disk.raw"), 1 << 20);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)], limits: new NbdServerLimits { MaxConnections = 1 });
        var options = new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath) };
        var holder = await NbdClient.ConnectAsync(options, Token);

        // One waits and gives up, the next waits on: when the slot frees, it goes to the next.
        using (await ConnectRawAsync(server.SocketPath))
        {
            Assert.True(await server.Log.WaitForAsync("waiting for a connection slot"));
        }

        var next = NbdClient.ConnectAsync(options, Token);
        await holder.DisposeAsync();

        await using var served = await next;
        await served.FlushAsync(Token);
        Assert.True(await server.Log.WaitForAsync("unix client: left while waiting for a connection slot"));
    }

    [Fact]
    public void Limits_RefuseANegativeQueue()
    {
        var limits = new NbdServerLimits { MaxQueuedConnections = 0 };

        Assert.Equal(0, limits.MaxQueuedConnections);
        Assert.Equal(TimeSpan.FromSeconds(10), limits.HandshakeTimeout);
        Assert.Throws<ArgumentOutOfRangeException>(() => limits.MaxQueuedConnections = -1);
    }

    private static async Task<Socket> ConnectRawAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), Token);
        return socket;
    }
}
