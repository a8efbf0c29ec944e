using System.Buffers.Binary;
using System.Text;
using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// Raw bytes in, exact reply out: every malformed handshake or request gets the reply the
/// protocol prescribes, the cause is logged, the payload is skipped so framing survives, and
/// only a lost frame ends a connection (never the server).
/// </summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private const long Size = 1 << 20;
    private readonly TempDirectory _dir = new("nbd-bad");
    private RawImage _writable = null!;
    private TestServer _server = null!;

    public async ValueTask InitializeAsync()
    {
        _writable = RawImage.Create(_dir.File("rw.raw"), Size);
        await _writable.WriteAsync(0, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        _server = await TestServer.StartAsync(_dir,
        [
            new NbdExport("rw", _writable) { Description = "writable" },
            new NbdExport("ro", _writable) { ReadOnly = true },
        ]);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _writable.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<RawNbdConnection> ConnectAsync(uint clientFlags = 1)
    {
        var c = await RawNbdConnection.ConnectAsync(_server.SocketPath);
        var flags = await c.GreetAsync(clientFlags);
        Assert.Equal((ushort)(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes), flags);
        return c;
    }

    /// <summary>After any refusal, a LIST still works: the stream is still framed.</summary>
    private static async Task AssertStillFramedAsync(RawNbdConnection c)
    {
        await c.SendOptionAsync(NbdOption.List);
        var names = new List<string>();
        while (true)
        {
            var (option, type, data) = await c.ReadOptionReplyAsync();
            Assert.Equal(NbdOption.List, option);
            if (type == NbdOptionReplyType.Ack)
            {
                break;
            }

            Assert.Equal(NbdOptionReplyType.Server, type);
            names.Add(Encoding.UTF8.GetString(data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(data)));
        }

        Assert.Equal(["rw", "ro"], names);
    }

    [Fact]
    public async Task Handshake_UnknownClientFlags_DropsConnection()
    {
        await using var c = await ConnectAsync(clientFlags: 0x80);
        Assert.True(await c.IsClosedByServerAsync());
        Assert.True(await _server.Log.WaitForAsync("client flags 0x80 have unknown bits"));
    }

    [Fact]
    public async Task Handshake_BadOptionMagic_DropsOnlyThatConnection()
    {
        await using var bad = await ConnectAsync();
        await using var good = await ConnectAsync();
        await bad.SendOptionAsync(NbdOption.List, magic: 0x1122334455667788);
        Assert.True(await bad.IsClosedByServerAsync());
        Assert.True(await _server.Log.WaitForAsync("option magic is 0x1122334455667788"));
        await AssertStillFramedAsync(good);
    }

    [Fact]
    public async Task Handshake_RequestBeforeNegotiation_IsALostFrame()
    {
        await using var c = await ConnectAsync();
        await c.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 1);
        Assert.True(await c.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Handshake_UnknownOption_ErrUnsupAndFramingSurvives()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync((NbdOption)99, Encoding.ASCII.GetBytes("some payload"));
        var (option, type, data) = await c.ReadOptionReplyAsync();
        Assert.Equal((NbdOption)99, option);
        Assert.Equal(NbdOptionReplyType.ErrUnsupported, type);
        Assert.Equal("Unsupported option 99 (<unknown>)", Encoding.UTF8.GetString(data));
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_ExtendedHeaders_AnsweredUnsupported()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.ExtendedHeaders);
        var (_, type, _) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrUnsupported, type);
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_OversizeOption_ErrTooBigPayloadSkipped()
    {
        await using var c = await ConnectAsync();
        var big = new byte[new NbdServerLimits().MaxOptionLength + 1];
        await c.SendOptionAsync(NbdOption.Info, big);
        var (_, type, data) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrTooBig, type);
        Assert.Contains("too long", Encoding.UTF8.GetString(data), StringComparison.Ordinal);
        Assert.True(await _server.Log.WaitForAsync("invalid option: Info: length 65537 is over the limit 65536"));
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_SetMetaContextBeforeStructuredReply_ErrInvalid()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.SetMetaContext, RawNbdConnection.MetaContextPayload("rw", "base:allocation"));
        var (_, type, _) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrInvalid, type);
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_InfoUnknownExport_ErrUnknownNamingIt()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.Info, RawNbdConnection.InfoPayload("xyz"));
        var (_, type, data) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrUnknown, type);
        Assert.Equal("export 'xyz' not present", Encoding.UTF8.GetString(data));
        await AssertStillFramedAsync(c);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0 })]
    [InlineData(new byte[] { 0, 0, 0, 9, (byte)'r', (byte)'w', 0, 0 })]
    [InlineData(new byte[] { 0, 0, 0, 2, (byte)'r', (byte)'w', 0, 2, 0, 1 })]
    [InlineData(new byte[] { 0, 0, 0, 2, 0xff, 0xfe, 0, 0 })]
    public async Task Handshake_MalformedInfo_ErrInvalid(byte[] payload)
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.Info, payload);
        var (_, type, _) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrInvalid, type);
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_MalformedMetaContextQuery_ErrInvalid()
    {
        await using var c = await ConnectAsync();
        var payload = RawNbdConnection.MetaContextPayload("rw", "base:allocation");
        BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(10), 1000);
        await c.SendOptionAsync(NbdOption.ListMetaContext, payload);
        var (_, type, data) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrInvalid, type);
        Assert.Contains("query 0 of 1000 bytes runs past the end", Encoding.UTF8.GetString(data), StringComparison.Ordinal);
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_StartTlsWithoutCredentials_ErrPolicy()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.StartTls);
        var (_, type, _) = await c.ReadOptionReplyAsync();
        Assert.Equal(NbdOptionReplyType.ErrPolicy, type);
        await AssertStillFramedAsync(c);
    }

    [Fact]
    public async Task Handshake_ExportNameUnknown_HardDisconnect()
    {
        await using var c = await ConnectAsync();
        await c.SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes("nosuch"));
        Assert.True(await c.IsClosedByServerAsync());
        Assert.True(await _server.Log.WaitForAsync("export 'nosuch' not present"));
    }

    [Fact]
    public async Task Handshake_ExportName_SizeFlagsAndPadding()
    {
        // Without NO_ZEROES the answer is u64 size, u16 flags and 124 zero bytes (formats.md §4.2).
        await using var c = await ConnectAsync(clientFlags: 1);
        await c.SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes("ro"));
        var reply = await c.ReadAsync(8 + 2 + 124);
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(0x040f, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
        Assert.All(reply[10..], b => Assert.Equal(0, b));
        await c.SendRequestAsync(NbdCommand.Read, 0, 16, cookie: 5);
        var (error, cookie) = await c.ReadSimpleReplyAsync();
        Assert.Equal((0u, 5ul), (error, cookie));
        Assert.Equal(Enumerable.Repeat((byte)0x5a, 16), await c.ReadAsync(16));
    }

    [Fact]
    public async Task Handshake_TooManyOptions_DropsConnection()
    {
        await using var c = await ConnectAsync();
        var limit = new NbdServerLimits().MaxOptions;
        for (var i = 0; i < limit; i++)
        {
            await c.SendOptionAsync(NbdOption.StructuredReply);
            var (_, type, _) = await c.ReadOptionReplyAsync();
            Assert.Equal(NbdOptionReplyType.Ack, type);
        }

        await c.SendOptionAsync(NbdOption.StructuredReply);
        Assert.True(await c.IsClosedByServerAsync());
    }

    private async Task<RawNbdConnection> TransmissionAsync(string export, bool structured = true, params string[] contexts)
    {
        var c = await ConnectAsync(clientFlags: 3);
        if (structured)
        {
            await c.SendOptionAsync(NbdOption.StructuredReply);
            Assert.Equal(NbdOptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        }

        if (contexts.Length > 0)
        {
            await c.SendOptionAsync(NbdOption.SetMetaContext, RawNbdConnection.MetaContextPayload(export, contexts));
            while ((await c.ReadOptionReplyAsync()).Type != NbdOptionReplyType.Ack)
            {
            }
        }

        await c.GoAsync(export);
        return c;
    }

    [Fact]
    public async Task Request_ReadPastEnd_EinvalWithMessageAndLogged()
    {
        await using var c = await TransmissionAsync("ro");
        await c.SendRequestAsync(NbdCommand.Read, Size, 512, cookie: 7);
        var reply = await c.ReadReplyAsync();
        Assert.Equal(NbdReplyChunkType.Error, reply.Type);
        Assert.Equal(7ul, reply.Cookie);
        Assert.Equal((uint)NbdErrno.EINVAL, reply.Error);
        Assert.Equal($"operation past EOF; From: {Size}, Len: 512, Size: {Size}", reply.Message);
        Assert.True(await _server.Log.WaitForAsync("invalid request: NBD_CMD_READ: operation past EOF"));
    }

    [Fact]
    public async Task Request_WriteToReadOnly_EpermPayloadSkipped()
    {
        await using var c = await TransmissionAsync("ro");
        var payload = Enumerable.Repeat((byte)0x25, 8192).ToArray();

        // The payload starts with bytes that look like a request: if it were not skipped, the
        // server would read it as one.
        new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, 99, 0, 512).Encode(payload);
        await c.SendRequestAsync(NbdCommand.Write, 0, (uint)payload.Length, cookie: 1, payload: payload);
        await c.SendRequestAsync(NbdCommand.Read, 0, 4, cookie: 2);
        var refused = await c.ReadReplyAsync();
        Assert.Equal((1ul, (uint)NbdErrno.EPERM), (refused.Cookie, refused.Error));
        var read = await c.ReadReplyAsync();
        Assert.Equal(2ul, read.Cookie);
        Assert.Equal(NbdReplyChunkType.OffsetData, read.Type);
        Assert.Equal([0x5a, 0x5a, 0x5a, 0x5a], read.Payload[8..]);
    }

    [Fact]
    public async Task Request_OversizeWrite_EinvalPayloadSkipped()
    {
        await using var c = await TransmissionAsync("rw");
        var max = new NbdServerLimits().MaxPayloadLength;

        // The size check comes first, and the whole payload is consumed before the reply.
        var payload = new byte[max + 4096];
        await c.SendRequestAsync(NbdCommand.Write, 0, (uint)payload.Length, cookie: 3, payload: payload);
        await c.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 4);
        var refused = await c.ReadReplyAsync();
        Assert.Equal((3ul, (uint)NbdErrno.EINVAL), (refused.Cookie, refused.Error));
        Assert.Contains("over the maximum payload", refused.Message, StringComparison.Ordinal);
        var flushed = await c.ReadReplyAsync();
        Assert.Equal((4ul, 0u), (flushed.Cookie, flushed.Error));
    }

    [Theory]
    [InlineData((ushort)99, 0u, 0u, (ushort)0, "invalid request type (99) received")]
    [InlineData((ushort)NbdCommand.Read, 0u, 0u, (ushort)0, "length is 0")]
    [InlineData((ushort)NbdCommand.Read, 0u, 512u, (ushort)NbdCommandFlags.ReqOne, "unsupported flags 0x8")]
    [InlineData((ushort)NbdCommand.Flush, 4096u, 0u, (ushort)0, "must be 0")]
    [InlineData((ushort)NbdCommand.BlockStatus, 0u, 512u, (ushort)0, "no meta context was negotiated")]
    [InlineData((ushort)NbdCommand.WriteZeroes, 1048064u, 1024u, (ushort)0, "operation past EOF")]
    public async Task Request_Invalid_ErrorReplyAndConnectionGoesOn(ushort command, uint offset, uint length, ushort flags, string why)
    {
        await using var c = await TransmissionAsync("rw");
        await c.SendRequestAsync((NbdCommand)command, offset, length, cookie: 11, (NbdCommandFlags)flags);
        var reply = await c.ReadReplyAsync();
        Assert.Equal(11ul, reply.Cookie);
        Assert.NotEqual(0u, reply.Error);
        Assert.Contains(why, reply.Message, StringComparison.Ordinal);
        Assert.True(await _server.Log.WaitForAsync(why));
        await c.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 12);
        var flushed = await c.ReadReplyAsync();
        Assert.Equal((12ul, 0u), (flushed.Cookie, flushed.Error));
    }

    [Fact]
    public async Task Request_WriteZeroesPastEnd_Enospc()
    {
        await using var c = await TransmissionAsync("rw");
        await c.SendRequestAsync(NbdCommand.WriteZeroes, Size - 512, 1024, cookie: 1);
        Assert.Equal((uint)NbdErrno.ENOSPC, (await c.ReadReplyAsync()).Error);
    }

    [Fact]
    public async Task Request_SimpleRepliesMode_ErrorIsSimpleReply()
    {
        await using var c = await TransmissionAsync("ro", structured: false);
        await c.SendRequestAsync(NbdCommand.Read, Size, 512, cookie: 8);
        var (error, cookie) = await c.ReadSimpleReplyAsync();
        Assert.Equal(((uint)NbdErrno.EINVAL, 8ul), (error, cookie));

        await c.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 9, NbdCommandFlags.DontFragment);
        Assert.Equal(((uint)NbdErrno.EINVAL, 9ul), await c.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Request_BadMagic_DropsOnlyThatConnection()
    {
        await using var bad = await TransmissionAsync("ro");
        await using var good = await TransmissionAsync("ro");
        await bad.SendRequestAsync(NbdCommand.Read, 0, 512, cookie: 1, magic: 0xdeadbeef);
        Assert.True(await bad.IsClosedByServerAsync());
        Assert.True(await _server.Log.WaitForAsync("request magic is 0xdeadbeef"));
        await good.SendRequestAsync(NbdCommand.Read, 0, 4, cookie: 2);
        Assert.Equal(2ul, (await good.ReadReplyAsync()).Cookie);
    }

    [Fact]
    public async Task Request_ShortRead_DropsConnection()
    {
        await using var c = await TransmissionAsync("rw");
        var header = new byte[NbdWire.RequestLength];
        new NbdRequest(NbdCommandFlags.None, NbdCommand.Write, 1, 0, 4096).Encode(header);
        await c.SendAsync([.. header, .. new byte[100]]);
        await c.DisposeAsync();
        await using var good = await TransmissionAsync("rw");
        await good.SendRequestAsync(NbdCommand.Flush, 0, 0, cookie: 1);
        Assert.Equal(0u, (await good.ReadReplyAsync()).Error);
    }

    [Fact]
    public async Task Request_SparseRead_HoleChunksAndDfSingleChunk()
    {
        await using var c = await TransmissionAsync("ro");
        await c.SendRequestAsync(NbdCommand.Read, 0, 65536, cookie: 1);
        var first = await c.ReadReplyAsync();
        var second = await c.ReadReplyAsync();
        Assert.Equal(NbdReplyChunkType.OffsetData, first.Type);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64BigEndian(first.Payload));
        Assert.Equal(8 + 4096, first.Payload.Length);
        Assert.Equal(NbdReplyChunkType.OffsetHole, second.Type);
        Assert.Equal(4096ul, BinaryPrimitives.ReadUInt64BigEndian(second.Payload));
        Assert.Equal(65536u - 4096, BinaryPrimitives.ReadUInt32BigEndian(second.Payload.AsSpan(8)));
        Assert.Equal(NbdReplyFlags.Done, second.Flags);

        await c.SendRequestAsync(NbdCommand.Read, 0, 65536, cookie: 2, NbdCommandFlags.DontFragment);
        var single = await c.ReadReplyAsync();
        Assert.Equal((NbdReplyChunkType.OffsetData, NbdReplyFlags.Done, 8 + 65536), (single.Type, single.Flags, single.Payload.Length));
    }

    [Fact]
    public async Task Request_BlockStatus_ReqOneAndTail()
    {
        await using var c = await TransmissionAsync("ro", true, "base:allocation");
        await c.SendRequestAsync(NbdCommand.BlockStatus, 0, (uint)Size, cookie: 1);
        var all = await c.ReadReplyAsync();
        Assert.Equal(NbdReplyChunkType.BlockStatus, all.Type);
        Assert.Equal(Descriptors((4096, 0), ((uint)Size - 4096, 3)), all.Payload);

        await c.SendRequestAsync(NbdCommand.BlockStatus, 0, (uint)Size, cookie: 2, NbdCommandFlags.ReqOne);
        Assert.Equal(Descriptors((4096, 0)), (await c.ReadReplyAsync()).Payload);

        await c.SendRequestAsync(NbdCommand.BlockStatus, Size - 100, 100, cookie: 3);
        Assert.Equal(Descriptors((100, 3)), (await c.ReadReplyAsync()).Payload);
    }

    private static byte[] Descriptors(params (uint Length, uint Flags)[] extents)
    {
        var bytes = new byte[4 + (8 * extents.Length)];
        for (var i = 0; i < extents.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 + (8 * i)), extents[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8 + (8 * i)), extents[i].Flags);
        }

        return bytes;
    }

    [Fact]
    public async Task Request_Disconnect_FinishesInFlightRequests()
    {
        await using var c = await TransmissionAsync("rw");
        await c.SendRequestAsync(NbdCommand.Write, 8192, 4, cookie: 1, payload: [1, 2, 3, 4]);
        await c.SendRequestAsync(NbdCommand.Disconnect, 0, 0, cookie: 2);
        var written = await c.ReadReplyAsync();
        Assert.Equal((1ul, 0u), (written.Cookie, written.Error));
        Assert.True(await c.IsClosedByServerAsync());
        var check = new byte[4];
        await _writable.ReadAsync(8192, check, TestContext.Current.CancellationToken);
        Assert.Equal([1, 2, 3, 4], check);
    }
}
