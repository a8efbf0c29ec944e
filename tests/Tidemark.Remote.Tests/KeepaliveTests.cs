using Tidemark.Remote.Protocol;
using Tidemark.Remote.Tests.Support;
using Tidemark.Remote.Xdr;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>
/// The server's keepalive, as libvirtd's (src/rpc/virkeepalive.c): a client that asked about
/// feature PROGRAM_KEEPALIVE is pinged when silent and dropped after KeepaliveCount unanswered
/// PINGs; any message restarts the count; a client that never asked is never pinged. Intervals
/// are shortened here (300 ms instead of libvirtd's 5 s) so a dead client is found in a second;
/// a client that must stay connected is given <see cref="Patient"/> unanswered PINGs, so that a
/// loaded machine delaying its answers by a few hundred milliseconds does not drop it.
/// </summary>
public sealed class KeepaliveTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(300);

    /// <summary>Dropped after 1.2 s of silence: 300 ms × (3 + 1).</summary>
    private const int Patient = 3;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static RemoteServerLimits Limits(int count) => new() { KeepaliveInterval = Interval, KeepaliveCount = count };

    [Fact]
    public async Task SilentClientThatAskedForKeepalive_IsPingedCountTimes_ThenDisconnected()
    {
        await using var server = await TestRemoteServer.StartAsync(Limits(count: 2));
        await using var c = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await c.OpenAsync();
        Assert.True(await AskForKeepaliveAsync(c));

        var pings = 0;
        while (await c.ReadAsync(TimeSpan.FromSeconds(20)) is { } message)
        {
            Assert.True(IsPing(message), $"unexpected message: program {message.Header.Program:x} procedure {message.Header.Procedure}");
            pings++;
        }

        Assert.Equal(2, pings);

        // Only the dead client was dropped.
        await using var other = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await other.OpenAsync();
    }

    [Fact]
    public async Task ClientAnsweringEveryPing_StaysConnectedAndIsServed()
    {
        await using var server = await TestRemoteServer.StartAsync(Limits(Patient));
        await using var c = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await c.OpenAsync();
        Assert.True(await AskForKeepaliveAsync(c));

        // Three times the silence that drops a client.
        var pings = 0;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(3.6);
        while (DateTime.UtcNow < until)
        {
            var message = await c.ReadAsync(TimeSpan.FromSeconds(20));
            Assert.NotNull(message);
            Assert.True(IsPing(message));
            pings++;
            await c.SendAsync(RawRemoteConnection.Header(28, RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Pong, type: (uint)RemoteMessageType.Message));
        }

        Assert.True(pings >= 6, $"{pings} pings in 3.6 s of silence at a 300 ms interval");
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        var reply = await NextReplyAsync(c);
        Assert.Equal(RemoteMessageStatus.Ok, reply.Header.Status);
    }

    [Fact]
    public async Task ClientThatNeverAskedForKeepalive_IsNeverPinged()
    {
        await using var server = await TestRemoteServer.StartAsync(Limits(count: 0));
        await using var c = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await c.OpenAsync();

        // Five intervals of silence, where a client that asked would have been dropped after one.
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));
        var buffer = new byte[1];
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await c.Socket.ReceiveAsync(buffer, quiet.Token));

        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await NextReplyAsync(c)).Header.Status);
    }

    /// <summary>
    /// A client whose calls fill its slots is not read by the server until one ends, so its
    /// silence proves nothing: it is not dropped however long the calls take.
    /// </summary>
    [Fact]
    public async Task ClientTheServerStoppedReading_IsNotDropped()
    {
        await using var server = await TestRemoteServer.StartAsync(new RemoteServerLimits { KeepaliveInterval = Interval, KeepaliveCount = 0, MaxConcurrentCallsPerConnection = 1 });
        await using var c = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await c.OpenAsync();
        Assert.True(await AskForKeepaliveAsync(c));

        server.Hypervisor.HoldHostname = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = await c.CallAsync(RemoteProcedure.ConnectGetHostname);
        var queued = await c.CallAsync(RemoteProcedure.ConnectGetType);

        // Four times the silence after which a client that is read is dropped (count 0: 300 ms).
        await Task.Delay(TimeSpan.FromSeconds(1.2), Token);
        Assert.False(server.Hypervisor.HeldCallCancelled.Task.IsCompleted, "the held call was cancelled: the connection was dropped");
        server.Hypervisor.HoldHostname.SetResult();

        var first = await NextReplyAsync(c);
        var second = await NextReplyAsync(c);
        Assert.Equal((held, RemoteMessageStatus.Ok), (first.Header.Serial, first.Header.Status));
        Assert.Equal((queued, RemoteMessageStatus.Ok), (second.Header.Serial, second.Header.Status));
    }

    /// <summary>virsh runs libvirt's event loop, which answers the server's PINGs while it waits for events.</summary>
    [Fact]
    public async Task Virsh_WaitingForEvents_AnswersThePings()
    {
        await using var server = await TestRemoteServer.StartAsync(Limits(Patient));
        server.Hypervisor.AddDomain("vm1", running: true);
        var r = await Virsh.RunAsync(server, "event", "--all", "--loop", "--timeout", "4");

        // virsh ends a wait that timed out with status 1; a dropped connection would print
        // "Disconnected from … due to end of file" instead, as before keepalive was answered.
        Assert.Equal("event loop timed out\nevents received: 0\n\n", r.Stdout);
        Assert.Equal(string.Empty, r.Stderr);
    }

    /// <summary>
    /// libvirt-python with an event implementation that runs answers; one that never runs its
    /// loop is a client that cannot answer, and the server drops it: its next call fails.
    /// </summary>
    [Theory]
    [InlineData(true, "True\n")]
    [InlineData(false, "error 38\n")]
    public async Task LibvirtPython_IsKeptWhileItsEventLoopRuns_AndDroppedWhenItStalls(bool loop, string expected)
    {
        await PythonLibvirt.RequireAsync();
        await using var server = await TestRemoteServer.StartAsync(Limits(Patient));
        var r = await KeepaliveClient.RunAsync(server.Uri, loop, TimeSpan.FromSeconds(3.6));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(expected, r.Stdout);
    }

    private static async Task<bool> AskForKeepaliveAsync(RawRemoteConnection c)
    {
        await c.CallAsync(RemoteProcedure.ConnectSupportsFeature, w => w.WriteInt32((int)RemoteFeature.ProgramKeepalive));
        var reply = await NextReplyAsync(c);
        Assert.Equal(RemoteMessageStatus.Ok, reply.Header.Status);
        var reader = new XdrReader(reply.Payload.Span);
        return reader.ReadInt32() == 1;
    }

    /// <summary>The next reply, answering the PINGs that come before it.</summary>
    private static async Task<RemoteMessage> NextReplyAsync(RawRemoteConnection c)
    {
        while (true)
        {
            var message = await c.ReadAsync(TimeSpan.FromSeconds(20));
            Assert.NotNull(message);
            if (!IsPing(message))
            {
                return message;
            }

            await c.SendAsync(RawRemoteConnection.Header(28, RemoteWire.KeepaliveProgram, (uint)KeepaliveProcedure.Pong, type: (uint)RemoteMessageType.Message));
        }
    }

    private static bool IsPing(RemoteMessage message) =>
        message.Header is { Program: RemoteWire.KeepaliveProgram, Type: RemoteMessageType.Message, Serial: 0 } && message.Header.Procedure == (uint)KeepaliveProcedure.Ping;
}
