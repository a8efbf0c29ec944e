using System.Net.Sockets;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>Many clients and many requests at once, on one server.</summary>
public sealed class ConcurrencyTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task HundredConcurrentClients_EachReadsItsOwnRegion()
    {
        using var dir = new TempDirectory("nbd-100");
        const int Clients = 100;
        const int Region = 64 << 10;
        var path = dir.File("disk.raw");
        var content = new byte[Clients * Region];
        new Random(100).NextBytes(content);
        await File.WriteAllBytesAsync(path, content, Token);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image) { MultiConn = true }]);

        var clients = await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ =>
            NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath) }, Token)));
        try
        {
            await Task.WhenAll(clients.Select(async (client, i) =>
            {
                var buffer = new byte[Region];
                await client.ReadAsync((long)i * Region, buffer, cancellationToken: Token);
                Assert.Equal(content.AsSpan(i * Region, Region).ToArray(), buffer);
            }));
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task RawFileShrunkWhileServed_ReadsPastItsEndAsZeroes()
    {
        // Reads of a raw image leave the data in the file and let the kernel send it; past the
        // end of a file that shrank under the export that would leave the frame short, so those
        // reads must take the path that fills zeroes.
        using var dir = new TempDirectory("nbd-shrunk");
        var path = dir.File("disk.raw");
        var content = new byte[1 << 20];
        new Random(7).NextBytes(content);
        await File.WriteAllBytesAsync(path, content, Token);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)]);
        await using var client = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath) }, Token);

        var whole = new byte[1 << 20];
        await client.ReadAsync(0, whole, cancellationToken: Token);
        Assert.Equal(content, whole);

        using (var shrink = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            shrink.SetLength(512 << 10);
        }

        var across = new byte[256 << 10];
        await client.ReadAsync(384 << 10, across, cancellationToken: Token);
        Assert.Equal(content.AsSpan(384 << 10, 128 << 10).ToArray(), across.AsSpan(0, 128 << 10).ToArray());
        Assert.All(across.AsSpan(128 << 10).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task MultiConn_WritesFromFourConnections_FlushOnOneMakesAllDurable()
    {
        using var dir = new TempDirectory("nbd-multiconn");
        var path = dir.File("disk.raw");
        await using (var image = RawImage.Create(path, 8 << 20))
        {
            await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image) { MultiConn = true }]);
            var options = new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath) };
            var clients = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => NbdClient.ConnectAsync(options, Token)));
            Assert.All(clients, c => Assert.True(c.CanMultiConn));

            // Each connection writes its own 2 MiB with 32 concurrent 64 KiB requests.
            await Task.WhenAll(clients.Select((client, i) => Task.WhenAll(Enumerable.Range(0, 32).Select(j =>
                client.WriteAsync(((long)i << 21) + (j << 16), Enumerable.Repeat((byte)(0x10 + i), 1 << 16).ToArray(), cancellationToken: Token).AsTask()))));
            await clients[0].FlushAsync(Token);
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }

        var check = await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x10 0 2M", "-c", "read -P 0x11 2M 2M", "-c", "read -P 0x12 4M 2M", "-c", "read -P 0x13 6M 2M", path);
        Assert.DoesNotContain("Pattern verification failed", check, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectionLimit_QueuesPastTheLimit_RefusesPastTheQueue_ServesInTurn()
    {
        using var dir = new TempDirectory("nbd-limit");
        await using var image = RawImage.Create(dir.File("disk.raw"), 1 << 20);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)], limits: new NbdServerLimits { MaxConnections = 2, MaxQueuedConnections = 1 });
        var options = new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath) };
        var first = await NbdClient.ConnectAsync(options, Token);
        var second = await NbdClient.ConnectAsync(options, Token);

        // The third is accepted and waits, not greeted; the fourth finds the queue full.
        var third = NbdClient.ConnectAsync(options, Token);
        Assert.True(await server.Log.WaitForAsync("unix client: waiting for a connection slot: 2 connections are open"));
        await Assert.ThrowsAsync<NbdException>(async () => await NbdClient.ConnectAsync(options, Token));
        Assert.True(await server.Log.WaitForAsync("refusing a connection: all 2 connection slots are taken and the queue of 1 is full"));
        Assert.False(third.IsCompleted);

        // A slot freed goes to the one waiting.
        await first.DisposeAsync();
        await using var served = await third;
        await served.FlushAsync(Token);
        await second.DisposeAsync();
    }

    [Fact]
    public async Task Pipelined_MixedRequestsOnOneConnection_AllRepliesMatchTheirRequests()
    {
        using var dir = new TempDirectory("nbd-pipeline");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: false);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)]);
        await using var client = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath), MetaContexts = ["base:allocation"] }, Token);
        var tasks = new List<Task>();
        for (var i = 0; i < 200; i++)
        {
            var n = i;
            tasks.Add((n % 4) switch
            {
                0 => Task.Run(async () =>
                {
                    var b = new byte[4096];
                    await client.ReadAsync(0, b, cancellationToken: Token);
                    Assert.All(b, x => Assert.Equal(0xab, x));
                }, Token),
                1 => client.WriteAsync((32L << 20) + (n * 4096), Enumerable.Repeat((byte)n, 4096).ToArray(), cancellationToken: Token).AsTask(),
                2 => Task.Run(async () =>
                {
                    var s = await client.BlockStatusAsync(3 << 20, 1 << 20, NbdCommandFlags.ReqOne, Token);
                    Assert.Equal(new NbdBlockExtent(128 << 10, 0), Assert.Single(s["base:allocation"]));
                }, Token),
                _ => client.CacheAsync(client.Size - 4096, 4096, Token).AsTask(),
            });
        }

        await Task.WhenAll(tasks);
        await client.FlushAsync(Token);
        var back = new byte[4096];
        await client.ReadAsync((32L << 20) + (5 * 4096), back, cancellationToken: Token);
        Assert.All(back, x => Assert.Equal(5, x));
    }
}
