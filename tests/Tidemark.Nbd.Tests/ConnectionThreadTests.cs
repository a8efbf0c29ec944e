using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// Each connection runs on a thread of its own over a blocking socket: a receive that waits for
/// the next request and a send that waits for a client that does not read cannot see a
/// cancellation token, so stopping the server shuts the socket down under them. Neither may hold
/// the server, or other clients, up.
/// </summary>
public sealed class ConnectionThreadTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Stop_EndsAnIdleConnection_AndOneWhoseClientStoppedReading()
    {
        using var dir = new TempDirectory("nbd-threads");
        var path = dir.File("disk.raw");
        var data = new byte[64 << 20];
        Array.Fill(data, (byte)0xA5);
        await File.WriteAllBytesAsync(path, data, Token);
        await using var image = RawImage.Open(path, readOnly: true);
        var server = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        await using var idle = await RawNbdConnection.ConnectAsync(server.SocketPath);
        await using var stuck = await RawNbdConnection.ConnectAsync(server.SocketPath);
        foreach (var connection in new[] { idle, stuck })
        {
            await connection.GreetAsync();
            await connection.GoAsync("vda");
        }

        // 64 MiB of replies (sent with sendfile) to a client that reads none of them: far
        // more than the socket buffers hold, so the reply's send blocks.
        for (ulong i = 0; i < 8; i++)
        {
            await stuck.SendRequestAsync(NbdCommand.Read, i << 23, 8 << 20, cookie: i);
        }

        await Task.Delay(500, Token);

        // Another client is served meanwhile.
        Assert.Equal("67108864\n", (await Peer.RunAsync("nbdinfo", ["--size", server.UnixUri("vda")])).EnsureSuccess().Stdout);

        var stop = server.DisposeAsync().AsTask();
        Assert.Same(stop, await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(30), Token)));
        await stop;
        Assert.True(await idle.IsClosedByServerAsync());
        Assert.True(await stuck.IsClosedByServerAsync());
    }

    [Fact]
    public async Task ARequestOnTheConnectionThread_IsAnsweredInOrder_ForEveryCommand()
    {
        // A write, a read of it, a flush, write-zeroes and a read again, one after the other on one
        // connection: each runs to its reply on the connection's thread before the next is read.
        using var dir = new TempDirectory("nbd-threads-order");
        await using var image = RawImage.Create(dir.File("disk.raw"), 1 << 20);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        await using var connection = await RawNbdConnection.ConnectAsync(server.SocketPath);
        await connection.GreetAsync();
        await connection.GoAsync("vda");

        var block = new byte[4096];
        Array.Fill(block, (byte)0x5A);
        await connection.SendRequestAsync(NbdCommand.Write, 8192, 4096, cookie: 1, payload: block);
        Assert.Equal((0u, 1ul), await connection.ReadSimpleReplyAsync());
        await connection.SendRequestAsync(NbdCommand.Read, 8192, 4096, cookie: 2);
        Assert.Equal((0u, 2ul), await connection.ReadSimpleReplyAsync());
        Assert.Equal(block, await connection.ReadAsync(4096));
        await connection.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 3);
        Assert.Equal((0u, 3ul), await connection.ReadSimpleReplyAsync());
        await connection.SendRequestAsync(NbdCommand.WriteZeroes, 8192, 2048, cookie: 4);
        Assert.Equal((0u, 4ul), await connection.ReadSimpleReplyAsync());
        await connection.SendRequestAsync(NbdCommand.Read, 8192, 4096, cookie: 5);
        Assert.Equal((0u, 5ul), await connection.ReadSimpleReplyAsync());
        var expected = new byte[4096];
        Array.Fill(expected, (byte)0x5A, 2048, 2048);
        Assert.Equal(expected, await connection.ReadAsync(4096));

        // And qemu-io, over a connection of its own, sees the same bytes.
        var dump = (await Peer.RunAsync("qemu-io", ["-f", "raw", "-r", "-c", "read -P 0x5a 10240 2048", "-c", "read -P 0 8192 2048", server.UnixUri("vda")])).EnsureSuccess().Stdout;
        Assert.DoesNotContain("Pattern verification failed", dump, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ABurstOfPipelinedRequests_GetsEveryReply_AndDisconnectSendsThemFirst(bool disconnect)
    {
        // 64 writes, an invalid request and (maybe) NBD_CMD_DISC in one send: the connection's
        // thread holds small replies back while it still has requests in hand, so it must send
        // them once it has none left (or before it closes), with nothing more from the client.
        using var dir = new TempDirectory("nbd-threads-burst");
        var path = dir.File("disk.raw");
        await using var image = RawImage.Create(path, 1 << 20);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("vda", image)]);
        await using var connection = await RawNbdConnection.ConnectAsync(server.SocketPath);
        await connection.GreetAsync();
        await connection.GoAsync("vda");

        const int Writes = 64;
        var burst = new MemoryStream();
        for (var i = 0; i < Writes; i++)
        {
            var frame = new byte[NbdWire.RequestLength + 4096];
            new NbdRequest(NbdCommandFlags.None, NbdCommand.Write, (ulong)i + 1, (ulong)i * 4096, 4096).Encode(frame);
            Array.Fill(frame, (byte)(i + 1), NbdWire.RequestLength, 4096);
            burst.Write(frame);
        }

        var pastEnd = new byte[NbdWire.RequestLength];
        new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, 1000, 1 << 20, 4096).Encode(pastEnd);
        burst.Write(pastEnd);
        if (disconnect)
        {
            var disc = new byte[NbdWire.RequestLength];
            new NbdRequest(NbdCommandFlags.None, NbdCommand.Disconnect, 2000, 0, 0).Encode(disc);
            burst.Write(disc);
        }

        await connection.SendAsync(burst.ToArray());

        var replies = new Dictionary<ulong, uint>();
        for (var i = 0; i <= Writes; i++)
        {
            var (error, cookie) = await connection.ReadSimpleReplyAsync();
            replies.Add(cookie, error);
        }

        Assert.Equal([.. Enumerable.Range(1, Writes).Select(i => (ulong)i), 1000UL], replies.Keys.Order());
        Assert.All(Enumerable.Range(1, Writes), i => Assert.Equal(0u, replies[(ulong)i]));
        Assert.Equal((uint)NbdErrno.EINVAL, replies[1000]);
        if (disconnect)
        {
            Assert.True(await connection.IsClosedByServerAsync());
        }

        var written = await File.ReadAllBytesAsync(path, Token);
        for (var i = 0; i < Writes; i++)
        {
            Assert.True(written.AsSpan(i * 4096, 4096).IndexOfAnyExcept((byte)(i + 1)) < 0, $"block {i} holds what write {i + 1} wrote");
        }
    }
}
