using System.Buffers;
using FsCheck;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Tests;

/// <summary>XDR round trips of every shared structure, and the decoders on random bytes.</summary>
public sealed class XdrProperties
{
    private delegate T Decode<T>(ref XdrReader reader);

    private static byte[] Encode(Action<XdrWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(new XdrWriter(buffer));
        return buffer.WrittenSpan.ToArray();
    }

    private static T RoundTrip<T>(byte[] bytes, Decode<T> decode)
    {
        var reader = new XdrReader(bytes);
        var value = decode(ref reader);
        reader.EnsureEnd("test");
        return value;
    }

    private static string Clean(NonNull<string> s) => s.Get.Replace('\uD800', 'x').Replace('\uDC00', 'y');

    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool Primitives_RoundTrip(int i, uint u, long l, ulong ul, double d, bool b)
    {
        var bytes = Encode(w =>
        {
            w.WriteInt32(i);
            w.WriteUInt32(u);
            w.WriteInt64(l);
            w.WriteUInt64(ul);
            w.WriteDouble(d);
            w.WriteBool(b);
        });
        var r = new XdrReader(bytes);
        var ok = r.ReadInt32() == i && r.ReadUInt32() == u && r.ReadInt64() == l && r.ReadUInt64() == ul && r.ReadDouble().Equals(d) && r.ReadBool() == b;
        return ok && r.Remaining == 0 && bytes.Length == 4 + 4 + 8 + 8 + 8 + 4;
    }

    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool Strings_ArePaddedToFourAndRoundTrip(NonNull<string> text, byte[] opaque)
    {
        var s = new string(Clean(text).Where(c => !char.IsSurrogate(c)).ToArray());
        var bytes = Encode(w =>
        {
            w.WriteString(s, RemoteWire.MaxStringLength);
            w.WriteOpaque(opaque, RemoteWire.MaxStringLength);
            w.WriteOptionalString(null, 10);
        });
        var r = new XdrReader(bytes);
        return bytes.Length % 4 == 0 && r.ReadString(RemoteWire.MaxStringLength) == s && r.ReadOpaque(RemoteWire.MaxStringLength).AsSpan().SequenceEqual(opaque) && r.ReadOptionalString(10) is null && r.Remaining == 0;
    }

    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool Domain_And_Checkpoint_RoundTrip(NonNull<string> name, Guid uuid, int id, NonNull<string> checkpoint)
    {
        var domain = new RemoteDomain(new string(Clean(name).Where(c => !char.IsSurrogate(c)).ToArray()), uuid, id);
        var cp = new RemoteCheckpoint(new string(Clean(checkpoint).Where(c => !char.IsSurrogate(c)).ToArray()), domain);
        return RoundTrip(Encode(cp.Write), RemoteCheckpoint.Read) == cp
            && RoundTrip(Encode(domain.Write), RemoteDomain.Read) == domain;
    }

    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool TypedParameters_RoundTrip(int i, uint u, long l, ulong ul, double d, bool b, NonNull<string> s)
    {
        var text = new string(Clean(s).Where(c => !char.IsSurrogate(c)).ToArray());
        IReadOnlyList<TypedParameter> list =
        [
            TypedParameter.Int("i", i), TypedParameter.UInt("ui", u), TypedParameter.LLong("l", l), TypedParameter.ULLong("ul", ul),
            TypedParameter.Double("d", d), TypedParameter.Boolean("b", b), TypedParameter.String("s", text),
        ];
        var stats = new JobStats(DomainJobType.Completed, list);
        var back = RoundTrip(Encode(stats.Write), JobStats.Read);
        return back.Type == stats.Type && back.Parameters.SequenceEqual(list);
    }

    [FsCheck.Xunit.Property(MaxTest = 300)]
    public bool Error_RoundTrip(int code, int domain, NonNull<string> message, bool withDomain)
    {
        var text = new string(Clean(message).Where(c => !char.IsSurrogate(c)).ToArray());
        var error = new RemoteErrorRecord(code, domain, text, 2, withDomain ? new RemoteDomain("vm", Guid.NewGuid(), -1) : null, "a", null, "c", 7, -7);
        return RoundTrip(Encode(error.Write), RemoteErrorRecord.Read) == error;
    }

    [Fact]
    public void Uuid_IsSentInTheOrderLibvirtPrintsIt()
    {
        var uuid = Guid.Parse("4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
        var bytes = Encode(w => RemoteDomain.WriteUuid(w, uuid));
        Assert.Equal(Convert.FromHexString("4dea22b31d52d8f32516782e98ab3fa0"), bytes);
    }

    [Fact]
    public void String_OverItsMaximum_IsRefusedBeforeReading()
    {
        var bytes = Encode(w => w.WriteUInt32(5_000_000));
        var e = Assert.Throws<RemoteProtocolException>(() => new XdrReader(bytes).ReadString(RemoteWire.MaxStringLength));
        Assert.Equal(RemoteProtocolErrorReason.LengthOverMaximum, e.Reason);
        Assert.Contains("5000000", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ArrayCount_ThatCannotFitInWhatIsLeft_IsRefused()
    {
        var bytes = Encode(w =>
        {
            w.WriteUInt32(16000);
            w.WriteUInt32(0);
        });
        var e = Assert.Throws<RemoteProtocolException>(() => new XdrReader(bytes).ReadArrayCount(RemoteWire.MaxCheckpoints, RemoteCheckpoint.MinWireSize, "checkpoints"));
        Assert.Equal(RemoteProtocolErrorReason.Truncated, e.Reason);
        var over = Encode(w => w.WriteUInt32(16385));
        Assert.Equal(RemoteProtocolErrorReason.LengthOverMaximum, Assert.Throws<RemoteProtocolException>(() => new XdrReader(over).ReadArrayCount(RemoteWire.MaxCheckpoints, 1, "checkpoints")).Reason);
    }

    [Fact]
    public void OptionalFlag_OtherThanZeroOrOne_IsRefused()
    {
        var e = Assert.Throws<RemoteProtocolException>(() => new XdrReader(Encode(w => w.WriteUInt32(2))).ReadOptionalFlag());
        Assert.Equal(RemoteProtocolErrorReason.InvalidDiscriminant, e.Reason);
    }

    [Fact]
    public void TypedParameter_OfUnknownType_IsRefusedNamingIt()
    {
        var bytes = Encode(w =>
        {
            w.WriteString("x", 80);
            w.WriteInt32(8);
            w.WriteInt32(0);
        });
        var e = Assert.Throws<RemoteProtocolException>(() => RoundTrip(bytes, TypedParameter.Read));
        Assert.Equal(RemoteProtocolErrorReason.UnknownUnionArm, e.Reason);
        Assert.Contains("'x'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_Hyper_IsRefused()
    {
        var e = Assert.Throws<RemoteProtocolException>(() => new XdrReader(new byte[7]).ReadUInt64());
        Assert.Equal(RemoteProtocolErrorReason.Truncated, e.Reason);
    }

    /// <summary>Random bytes through every decoder: a value or a RemoteProtocolException, nothing else.</summary>
    [FsCheck.Xunit.Property(MaxTest = 3000)]
    public bool Decoders_OnRandomBytes_ThrowOnlyRemoteProtocolException(byte[] noise)
    {
        Decode<object?>[] decoders =
        [
            (ref XdrReader r) => RemoteDomain.Read(ref r),
            (ref XdrReader r) => RemoteCheckpoint.Read(ref r),
            (ref XdrReader r) => RemoteErrorRecord.Read(ref r),
            (ref XdrReader r) => JobStats.Read(ref r),
            (ref XdrReader r) => JobInfo.Read(ref r),
            (ref XdrReader r) => DomainInfo.Read(ref r),
            (ref XdrReader r) => BlockJobInfo.Read(ref r),
            (ref XdrReader r) => TypedParameter.ReadList(ref r, RemoteWire.MaxGuestInfoParams, "params"),
            (ref XdrReader r) => r.ReadOptionalString(RemoteWire.MaxStringLength),
        ];
        foreach (var decode in decoders)
        {
            try
            {
                var reader = new XdrReader(noise);
                decode(ref reader);
            }
            catch (RemoteProtocolException)
            {
            }
        }

        try
        {
            var sequence = new ReadOnlySequence<byte>(noise);
            while (MessageFramer.TryRead(ref sequence, RemoteWire.MaxMessageLength, out _))
            {
            }
        }
        catch (RemoteProtocolException)
        {
        }

        return true;
    }

    /// <summary>Random bytes after a valid header: the framer always cuts exactly the declared length.</summary>
    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool Framer_CutsExactlyTheDeclaredLength(byte[] payload, uint serial)
    {
        var message = MessageBuilder.Remote(RemoteProcedure.ConnectGetType, RemoteMessageType.Call, serial);
        message.Payload.WriteFixedOpaque(payload);
        var bytes = message.Finish().ToArray();
        var twice = new ReadOnlySequence<byte>(bytes.Concat(bytes).ToArray());
        var firstOk = MessageFramer.TryRead(ref twice, RemoteWire.MaxMessageLength, out var first);
        var secondOk = MessageFramer.TryRead(ref twice, RemoteWire.MaxMessageLength, out var second);
        return firstOk && secondOk && twice.Length == 0 && first!.Header.Serial == serial && second!.Payload.Length == bytes.Length - RemoteWire.HeaderLength;
    }

    /// <summary>
    /// A call with file descriptors: the count word after the header is not part of the
    /// arguments, and the message is whole only once the count's descriptor bytes after it are in
    /// (fed one byte at a time, as a socket may deliver them); the next message follows them.
    /// </summary>
    [FsCheck.Xunit.Property(MaxTest = 200)]
    public bool Framer_CallWithFds_TakesTheCountAndTheDescriptorBytes(byte[] args, byte fdCount)
    {
        var count = fdCount % (RemoteWire.MaxFdsPerMessage + 1);
        var message = MessageBuilder.Remote(RemoteProcedure.DomainFdAssociate, RemoteMessageType.CallWithFds, 5);
        message.Payload.WriteUInt32((uint)count);
        message.Payload.WriteFixedOpaque(args);
        var next = MessageBuilder.Remote(RemoteProcedure.ConnectGetType, RemoteMessageType.Call, 6).Finish().ToArray();
        var bytes = message.Finish().ToArray().Concat(new byte[count]).Concat(next).ToArray();
        var framed = bytes.Length - next.Length;
        for (var fed = 0; fed < framed; fed++)
        {
            var partial = new ReadOnlySequence<byte>(bytes, 0, fed);
            if (MessageFramer.TryRead(ref partial, RemoteWire.MaxMessageLength, out _))
            {
                return false;
            }
        }

        var whole = new ReadOnlySequence<byte>(bytes);
        return MessageFramer.TryRead(ref whole, RemoteWire.MaxMessageLength, out var call)
            && call!.FdCount == count
            && call.Payload.Span.SequenceEqual(Encode(w => w.WriteFixedOpaque(args)))
            && MessageFramer.TryRead(ref whole, RemoteWire.MaxMessageLength, out var after)
            && after!.Header.Serial == 6 && whole.Length == 0;
    }

    [Fact]
    public void Framer_CallWithFdsAboveTheMaximum_IsRefused()
    {
        var message = MessageBuilder.Remote(RemoteProcedure.DomainFdAssociate, RemoteMessageType.CallWithFds, 5);
        message.Payload.WriteUInt32(RemoteWire.MaxFdsPerMessage + 1);
        var sequence = new ReadOnlySequence<byte>(message.Finish());
        var e = Assert.Throws<RemoteProtocolException>(() => MessageFramer.TryRead(ref sequence, RemoteWire.MaxMessageLength, out _));
        Assert.Equal(RemoteProtocolErrorReason.TooManyFds, e.Reason);
        Assert.Equal("Received too many FDs 33, expected 32 maximum", e.Message);
    }

    [Fact]
    public void Framer_LengthOverMaximum_IsRefusedFromTheLengthWordAlone()
    {
        var sequence = new ReadOnlySequence<byte>(new byte[] { 0x02, 0x00, 0x00, 0x01 });
        var e = Assert.Throws<RemoteProtocolException>(() => MessageFramer.TryRead(ref sequence, RemoteWire.MaxMessageLength, out _));
        Assert.Equal(RemoteProtocolErrorReason.MessageTooLarge, e.Reason);
    }

    /// <summary>
    /// Procedure numbers name libvirt's public APIs (remote_protocol.x is append-only); a
    /// number with no call, an event's or one past the last, is libvirtd's "unknown procedure".
    /// </summary>
    [Theory]
    [InlineData(RemoteWire.RemoteProgram, 23u, "virDomainLookupByName")]
    [InlineData(RemoteWire.RemoteProgram, 200u, "virDomainGetVcpusFlags")]
    [InlineData(RemoteWire.RemoteProgram, 349u, "virDomainGetFSInfo")]
    [InlineData(RemoteWire.RemoteProgram, 421u, "virDomainBackupBegin")]
    [InlineData(RemoteWire.RemoteProgram, 107u, "unknown procedure: 107")]
    [InlineData(RemoteWire.RemoteProgram, 9999u, "unknown procedure: 9999")]
    [InlineData(RemoteWire.QemuProgram, 3u, "virDomainQemuAgentCommand")]
    [InlineData(RemoteWire.QemuProgram, 6u, "unknown procedure: 6")]
    public void ApiNames_NameTheApiOfEachProcedure(uint program, uint procedure, string name) =>
        Assert.Equal(name, ApiNames.Of(program, procedure));

    /// <summary>The framer cuts a message of any program: whether it is served is the reader's to judge.</summary>
    [Fact]
    public void Framer_CutsAMessageOfAnyProgram()
    {
        var message = new MessageBuilder(0x00068000, 1, RemoteMessageType.Call, 0, RemoteMessageStatus.Ok).Finish();
        var sequence = new ReadOnlySequence<byte>(message);
        Assert.True(MessageFramer.TryRead(ref sequence, RemoteWire.MaxMessageLength, out var cut));
        Assert.Equal(0x00068000u, cut!.Header.Program);
        Assert.True(sequence.IsEmpty);
    }

    [Fact]
    public void Framer_IncompleteMessage_IsNotYetAMessage()
    {
        var message = MessageBuilder.Remote(RemoteProcedure.AuthList, RemoteMessageType.Call, 0);
        message.Payload.WriteInt32(1);
        var bytes = message.Finish().ToArray();
        var partial = new ReadOnlySequence<byte>(bytes.AsMemory(0, bytes.Length - 1));
        Assert.False(MessageFramer.TryRead(ref partial, RemoteWire.MaxMessageLength, out var none));
        Assert.Null(none);
        Assert.Equal(bytes.Length - 1, partial.Length);
    }
}
