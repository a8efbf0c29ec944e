using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Tests.Support;

namespace Tidemark.Remote.Tests;

/// <summary>
/// Raw bytes in, exact reply (or a closed connection) out. Each kind of bad input ends that
/// connection only: a well-behaved client connected all along keeps being served.
/// </summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private TestRemoteServer _server = null!;
    private LibvirtClient _bystander = null!;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _server = await TestRemoteServer.StartAsync(new RemoteServerLimits { MaxConcurrentCallsPerConnection = 4, MaxPendingRepliesPerConnection = 8 });
        _server.Hypervisor.AddDomain("vm1", running: true);
        _server.Hypervisor.AddCheckpoint("vm1", "c1", null, 1_700_000_000);
        _bystander = await LibvirtClient.ConnectAsync(_server.Uri, cancellationToken: Token);
    }

    public async ValueTask DisposeAsync()
    {
        await _bystander.DisposeAsync();
        await _server.DisposeAsync();
    }

    /// <summary>The client connected before the bad one is still served, and only it remains.</summary>
    private async Task AssertOthersStillServedAsync()
    {
        var vm1 = await _bystander.LookupDomainByNameAsync("vm1", Token);
        Assert.Equal("c1", (await _bystander.LookupCheckpointByNameAsync(vm1, "c1", cancellationToken: Token)).Name);
        await using var fresh = await LibvirtClient.ConnectAsync(_server.Uri, cancellationToken: Token);
        Assert.Equal("QEMU", await fresh.GetTypeAsync(Token));
    }

    private async Task WaitForConnectionsAsync(int count)
    {
        for (var i = 0; i < 500 && _server.Server.ConnectionCount != count; i++)
        {
            await Task.Delay(20, Token);
        }

        Assert.Equal(count, _server.Server.ConnectionCount);
    }

    [Fact]
    public async Task LengthOverMaximum_ClosesWithoutReadingThePayload()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.SendAsync(RawRemoteConnection.Header(RemoteWire.MaxMessageLength + 1, RemoteWire.RemoteProgram, 3));
        Assert.Null(await c.ReadAsync());
        await AssertOthersStillServedAsync();
    }

    [Fact]
    public async Task LengthShorterThanTheHeader_Closes()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.SendAsync(RawRemoteConnection.Header(12, RemoteWire.RemoteProgram, 3));
        Assert.Null(await c.ReadAsync());
        await AssertOthersStillServedAsync();
    }

    [Fact]
    public async Task TruncatedMessage_ThenEndOfStream_ReleasesTheConnection()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await WaitForConnectionsAsync(2);
        await c.SendAsync(RawRemoteConnection.Header(100, RemoteWire.RemoteProgram, 3).Concat(new byte[20]).ToArray());
        c.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        Assert.Null(await c.ReadAsync());
        await WaitForConnectionsAsync(1);
        await AssertOthersStillServedAsync();
    }

    /// <summary>
    /// A call to a program the server does not serve (LXC's, or REMOTE version 2) is answered
    /// with libvirtd's RPC error, virNetServerProgramUnknownError's words, and the connection
    /// is served on.
    /// </summary>
    [Theory]
    [InlineData(0x00068000u, 1u, "Cannot find program 425984 version 1")]
    [InlineData(RemoteWire.RemoteProgram, 2u, "Cannot find program 536903814 version 2")]
    [InlineData(0xfffffffeu, 1u, "Cannot find program -2 version 1")]
    public async Task UnknownProgram_IsAnsweredWithAnRpcError_AndTheConnectionStays(uint program, uint version, string message)
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        var call = RawRemoteConnection.Header(28, program, 1, serial: 9);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(call.AsSpan(8), version);
        await c.SendAsync(call);
        var reply = (await c.ReadAsync())!;
        Assert.Equal((program, version, 9u, RemoteMessageStatus.Error), (reply.Header.Program, reply.Header.Version, reply.Header.Serial, reply.Header.Status));
        var error = RawRemoteConnection.ErrorOf(reply);
        Assert.Equal(((int)VirErrorNumber.RpcError, (int)VirErrorDomain.Rpc, message), (error.Code, error.Domain, error.Message));
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
        await AssertOthersStillServedAsync();
    }

    /// <summary>
    /// The QEMU program's calls: refused before CONNECT_OPEN as every call is (its procedure 1
    /// is not REMOTE's CONNECT_OPEN); after it, a monitor command is NO_SUPPORT, a procedure the
    /// program lacks is libvirtd's "unknown procedure", a deregistration names the callback,
    /// and the connection is served on.
    /// </summary>
    [Fact]
    public async Task QemuProgramCalls_AreAnsweredAsLibvirtdAnswersThem()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        var vm1 = await _bystander.LookupDomainByNameAsync("vm1", Token);
        var monitorCommand = QemuCall(1, 3, w =>
        {
            vm1.Write(w);
            w.WriteString("info block", RemoteWire.MaxStringLength);
            w.WriteUInt32(1);
        });
        await c.SendAsync(monitorCommand);
        Assert.Equal("internal error: connection not open", RawRemoteConnection.ErrorOf((await c.ReadAsync())!).Message);

        await c.OpenAsync();
        await c.SendAsync(monitorCommand);
        var reply = (await c.ReadAsync())!;
        Assert.Equal((RemoteWire.QemuProgram, 1u, 3u), (reply.Header.Program, reply.Header.Procedure, reply.Header.Serial));
        Assert.Equal("this function is not supported by the connection driver: virDomainQemuMonitorCommand", RawRemoteConnection.ErrorOf(reply).Message);

        await c.SendAsync(QemuCall(6, 4, _ => { }));
        Assert.Equal("this function is not supported by the connection driver: unknown procedure: 6", RawRemoteConnection.ErrorOf((await c.ReadAsync())!).Message);

        await c.SendAsync(QemuCall(5, 5, w => w.WriteInt32(12)));
        Assert.Equal("internal error: qemu domain event callback 12 not registered", RawRemoteConnection.ErrorOf((await c.ReadAsync())!).Message);

        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
        await AssertOthersStillServedAsync();
    }

    private static ReadOnlyMemory<byte> QemuCall(uint procedure, uint serial, Action<Tidemark.Remote.Xdr.XdrWriter> args)
    {
        var call = new MessageBuilder(RemoteWire.QemuProgram, procedure, RemoteMessageType.Call, serial, RemoteMessageStatus.Ok);
        args(call.Payload);
        return call.Finish();
    }

    [Fact]
    public async Task ReplyTypeFromAClient_Closes()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.SendAsync(RawRemoteConnection.Header(28, RemoteWire.RemoteProgram, 3, type: 1));
        Assert.Null(await c.ReadAsync());
        await AssertOthersStillServedAsync();
    }

    /// <summary>A call with file descriptors announcing more than a message may carry (VIR_NET_MESSAGE_NUM_FDS_MAX).</summary>
    [Fact]
    public async Task CallWithTooManyFds_Closes()
    {
        await AssertCallWithFdsClosesAsync((uint)RemoteWire.MaxFdsPerMessage + 1, []);
    }

    /// <summary>A call announcing a descriptor whose byte comes without one (a plain write, no SCM_RIGHTS).</summary>
    [Fact]
    public async Task CallWithFds_WhoseDescriptorNeverCame_Closes()
    {
        await AssertCallWithFdsClosesAsync(1, [0]);
    }

    /// <summary>CONNECT_GET_TYPE as a call with <paramref name="count"/> descriptors, <paramref name="after"/> written plainly after it: the connection closes, others go on.</summary>
    private async Task AssertCallWithFdsClosesAsync(uint count, byte[] after)
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        var word = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(word, count);
        await c.SendAsync(RawRemoteConnection.Header(32, RemoteWire.RemoteProgram, (uint)RemoteProcedure.ConnectGetType, type: (uint)RemoteMessageType.CallWithFds, serial: 7).Concat(word).Concat(after).ToArray());
        Assert.Null(await c.ReadAsync());
        await AssertOthersStillServedAsync();
    }

    /// <summary>A whole frame whose XDR is garbage: an RPC error says why, and the connection is served on, as libvirtd serves it.</summary>
    [Fact]
    public async Task GarbageXdr_RepliesWhy_AndTheConnectionStays()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        var garbage = RawRemoteConnection.Header(28 + 8, RemoteWire.RemoteProgram, (uint)RemoteProcedure.DomainLookupByName, serial: 7)
            .Concat(new byte[] { 0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4 }).ToArray();
        await c.SendAsync(garbage);
        var reply = await c.ReadAsync();
        Assert.NotNull(reply);
        Assert.Equal(7u, reply.Header.Serial);
        var error = RawRemoteConnection.ErrorOf(reply);
        Assert.Equal((int)VirErrorNumber.RpcError, error.Code);
        Assert.StartsWith("Unable to decode message payload: string of 4294967280 bytes", error.Message, StringComparison.Ordinal);
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
        await AssertOthersStillServedAsync();
    }

    [Fact]
    public async Task TrailingBytesAfterTheArguments_AreGarbageToo()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        await c.CallAsync(RemoteProcedure.ConnectGetType, w => w.WriteInt32(5));
        var error = RawRemoteConnection.ErrorOf((await c.ReadAsync())!);
        Assert.Equal((int)VirErrorNumber.RpcError, error.Code);
        Assert.Contains("4 unexpected bytes", error.Message, StringComparison.Ordinal);
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
    }

    [Fact]
    public async Task CallBeforeOpen_IsRefusedAndTheConnectionStays()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        var error = RawRemoteConnection.ErrorOf((await c.ReadAsync())!);
        Assert.Equal(((int)VirErrorNumber.InternalError, "internal error: connection not open"), (error.Code, error.Message));
        await c.OpenAsync();
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
    }

    [Fact]
    public async Task UnknownProcedure_IsNoSupportAndTheConnectionStays()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        await c.CallAsync((RemoteProcedure)9999);
        var error = RawRemoteConnection.ErrorOf((await c.ReadAsync())!);
        Assert.Equal(((int)VirErrorNumber.NoSupport, "this function is not supported by the connection driver: unknown procedure: 9999"), (error.Code, error.Message));
        Assert.Equal(2, error.Level);
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
    }

    [Fact]
    public async Task KeepalivePing_IsAnsweredWithPong()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.SendAsync(RawRemoteConnection.Header(28, RemoteWire.KeepaliveProgram, 1, type: 2));
        var pong = await c.ReadAsync();
        Assert.NotNull(pong);
        Assert.Equal((RemoteWire.KeepaliveProgram, 2u, RemoteMessageType.Message, 0u), (pong.Header.Program, pong.Header.Procedure, pong.Header.Type, pong.Header.Serial));
        Assert.Equal(0, pong.Payload.Length);
    }

    /// <summary>
    /// 10,000 calls of 4 KiB (40 MB) sent without reading a reply: the server holds at most its
    /// bounded calls and replies, so it stops reading and the client's sending cannot finish
    /// (or the server closes); everyone else is served meanwhile and the flooder is released.
    /// </summary>
    [Fact]
    public async Task TenThousandCallsWithoutReadingReplies_MemoryStaysBounded()
    {
        var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        var name = new string('x', 4096);
        var sent = 0;
        var flood = Task.Run(async () =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                await c.CallAsync(RemoteProcedure.DomainLookupByName, w => w.WriteString(name, RemoteWire.MaxStringLength));
                Interlocked.Increment(ref sent);
            }
        }, Token);

        await AssertOthersStillServedAsync();
        await Task.Delay(500, Token);
        await AssertOthersStillServedAsync();
        Assert.True(!flood.IsCompleted || flood.IsFaulted, $"all {Volatile.Read(ref sent)} calls were taken in without a reply being read");
        Assert.True(Volatile.Read(ref sent) < 10_000);
        await c.DisposeAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => flood);
        await WaitForConnectionsAsync(1);
        await AssertOthersStillServedAsync();
    }

    /// <summary>A client gone while its call runs: the backend call is cancelled and the connection released.</summary>
    [Fact]
    public async Task ClientVanishesMidCall_CallIsCancelledAndOthersServed()
    {
        _server.Hypervisor.HoldHostname = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath))
        {
            await c.OpenAsync();
            await c.CallAsync(RemoteProcedure.ConnectGetHostname);
            await WaitForConnectionsAsync(2);
        }

        await _server.Hypervisor.HeldCallCancelled.Task.WaitAsync(TimeSpan.FromSeconds(30), Token);
        await WaitForConnectionsAsync(1);
        await AssertOthersStillServedAsync();
    }

    [Fact]
    public async Task RandomFramedCalls_EachGetsOneReplyOrTheConnectionCloses()
    {
        var random = new Random(20261130);
        for (var round = 0; round < 40; round++)
        {
            await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
            await c.OpenAsync();
            var procedure = (uint)random.Next(0, 450);
            var payload = new byte[random.Next(0, 64) * 4];
            random.NextBytes(payload);
            await c.SendAsync(RawRemoteConnection.Header((uint)(28 + payload.Length), RemoteWire.RemoteProgram, procedure, serial: 5).Concat(payload).ToArray());
            var reply = await c.ReadAsync();
            Assert.NotNull(reply);
            Assert.Equal((5u, procedure, RemoteMessageType.Reply), (reply.Header.Serial, reply.Header.Procedure, reply.Header.Type));
        }

        await AssertOthersStillServedAsync();
    }

    [Fact]
    public async Task OpenTwice_IsRefusedAndTheConnectionStays()
    {
        await using var c = await RawRemoteConnection.ConnectAsync(_server.SocketPath);
        await c.OpenAsync();
        await c.CallAsync(RemoteProcedure.ConnectOpen, w =>
        {
            w.WriteOptionalString(null, 10);
            w.WriteUInt32(0);
        });
        var error = RawRemoteConnection.ErrorOf((await c.ReadAsync())!);
        Assert.Equal(((int)VirErrorNumber.InternalError, "internal error: connection already open"), (error.Code, error.Message));
        await c.CallAsync(RemoteProcedure.ConnectGetType);
        Assert.Equal(RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
    }

    /// <summary>Stopping the server ends its connections: the client's next call says the connection is gone.</summary>
    [Fact]
    public async Task ServerStop_EndsConnections()
    {
        await _server.Server.StopAsync();
        Assert.Equal(0, _server.Server.ConnectionCount);
        Assert.False(File.Exists(_server.SocketPath));
        var e = await Assert.ThrowsAsync<RemoteProtocolException>(() => _bystander.GetTypeAsync(Token));
        Assert.Equal(RemoteProtocolErrorReason.ConnectionClosed, e.Reason);
    }
}
