using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>Properties of the request decoder, and a fuzz of the live transmission phase.</summary>
public sealed class RequestDecoderProperties
{
    [FsCheck.Xunit.Property(MaxTest = 2000)]
    public bool Decode_IsTheInverseOfEncode(ushort flags, ushort type, ulong cookie, ulong offset, uint length)
    {
        var request = new NbdRequest((NbdCommandFlags)flags, (NbdCommand)type, cookie, offset, length);
        var bytes = new byte[NbdWire.RequestLength];
        request.Encode(bytes);
        return NbdRequest.TryDecode(bytes, out var decoded, out var magic) && decoded == request && magic == NbdMagic.Request;
    }

    [FsCheck.Xunit.Property(MaxTest = 2000)]
    public bool Decode_AnyBytes_NeverThrowsAndRefusesExactlyBadMagic(byte[] noise)
    {
        var bytes = new byte[NbdWire.RequestLength];
        noise.AsSpan(0, Math.Min(noise.Length, bytes.Length)).CopyTo(bytes);
        var ok = NbdRequest.TryDecode(bytes, out _, out var magic);
        return ok == (BinaryPrimitives.ReadUInt32BigEndian(bytes) == NbdMagic.Request) && magic == BinaryPrimitives.ReadUInt32BigEndian(bytes);
    }

    [Fact]
    public void Decode_ShortHeader_ThrowsNamingTheLength()
    {
        var e = Assert.Throws<ArgumentException>(() => NbdRequest.TryDecode(new byte[27], out _, out _));
        Assert.Contains("got 27", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Random well-framed requests (any command, flags, offset and length, with the payload a
    /// WRITE declares) sent to a live server: every request except DISC gets exactly one reply
    /// with its cookie, and the connection survives all of them.
    /// </summary>
    [Fact]
    public async Task Server_RandomFramedRequests_OneReplyEachAndTheConnectionSurvives()
    {
        using var dir = new TempDirectory("nbd-fuzz");
        const long Size = 1 << 20;
        await using var image = RawImage.Create(dir.File("disk.raw"), Size);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)]);

        var commands = Gen.Elements((ushort)0, (ushort)1, (ushort)3, (ushort)4, (ushort)5, (ushort)6, (ushort)7, (ushort)8, (ushort)42);
        var offsets = Gen.OneOf(Gen.Choose(0, (int)Size).Select(x => (ulong)x), Gen.Elements(0ul, (ulong)Size, ulong.MaxValue, (ulong)Size - 1));
        var lengths = Gen.OneOf(Gen.Choose(0, 70000).Select(x => (uint)x), Gen.Elements(0u, 1u, (uint)Size, 33554433u));
        var flagGen = Gen.Choose(0, 0x3f).Select(x => (ushort)x);
        var requests = Gen.Zip(commands, Gen.Zip(flagGen, Gen.Zip(offsets, lengths))).Sample(300, new Rnd(20261125), 50);
        Assert.Equal(300, requests.Length);

        await using var c = await RawNbdConnection.ConnectAsync(server.SocketPath);
        await c.GreetAsync(3);
        await c.SendOptionAsync(NbdOption.StructuredReply);
        Assert.Equal(NbdOptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(NbdOption.SetMetaContext, RawNbdConnection.MetaContextPayload("", "base:allocation"));
        while ((await c.ReadOptionReplyAsync()).Type != NbdOptionReplyType.Ack)
        {
        }

        await c.GoAsync("");
        ulong cookie = 0;
        foreach (var (command, (flags, (offset, length))) in requests)
        {
            cookie++;
            var isWrite = command == (ushort)NbdCommand.Write;

            // Keep WRITE payloads small enough for the test; the length field still says what it says.
            var len = isWrite ? Math.Min(length, 70000u) : length;
            await c.SendRequestAsync((NbdCommand)command, offset, len, cookie, (NbdCommandFlags)flags, isWrite ? new byte[len] : null);
            while (true)
            {
                var reply = await c.ReadReplyAsync();
                Assert.Equal(cookie, reply.Cookie);
                if ((reply.Flags & NbdReplyFlags.Done) != 0)
                {
                    break;
                }
            }
        }

        await c.SendRequestAsync(NbdCommand.Flush, 0, 0, ++cookie);
        var last = await c.ReadReplyAsync();
        Assert.Equal((cookie, 0u), (last.Cookie, last.Error));
    }
}
