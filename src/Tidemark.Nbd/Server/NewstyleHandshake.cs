using System.Buffers;
using System.Buffers.Binary;
using System.Net.Security;
using System.Security.Authentication;
using System.Text;
using Microsoft.Extensions.Logging;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Server;

/// <summary>What the handshake agreed on: the export, reply style and selected contexts.</summary>
internal sealed record NegotiatedExport(NbdExport Export, bool Structured, IReadOnlyList<MetaContext> Contexts, NbdTransmissionFlags Flags);

/// <summary>
/// The server side of the fixed-newstyle handshake (formats.md §4.2): the greeting, then option
/// haggling until GO, EXPORT_NAME, ABORT or a broken frame. Every option reply is sent before the
/// next option is read, as the protocol orders. A malformed option gets an error reply and its
/// payload is consumed; only a lost frame (bad magic, short read, too many options) ends the
/// connection.
/// </summary>
internal sealed class NewstyleHandshake
{
    private readonly ServerConnection _connection;
    private readonly ILogger _logger;
    private bool _structured;
    private bool _noZeroes;
    private IReadOnlyList<MetaContext> _contexts = [];
    private string? _contextsExport;

    public NewstyleHandshake(ServerConnection connection, ILogger logger)
    {
        _connection = connection;
        _logger = logger;
    }

    private NbdServerLimits Limits => _connection.Limits;

    /// <summary>Runs the handshake; null when the client aborted or left.</summary>
    public async Task<NegotiatedExport?> RunAsync(CancellationToken cancellationToken)
    {
        var greeting = new byte[NbdWire.GreetingLength];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdMagic.Init);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdMagic.Option);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), (ushort)(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes));
        await _connection.Stream.WriteAsync(greeting, cancellationToken).ConfigureAwait(false);

        var clientFlagsBytes = new byte[sizeof(uint)];
        if (!await _connection.Reader.TryReadExactAsync(clientFlagsBytes, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        var clientFlags = (NbdClientFlags)BinaryPrimitives.ReadUInt32BigEndian(clientFlagsBytes);
        const NbdClientFlags known = NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes;
        if ((clientFlags & ~known) != 0)
        {
            // proto.md: unknown client flags → the server must drop the connection.
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"client flags 0x{(uint)clientFlags:x} have unknown bits");
        }

        _noZeroes = (clientFlags & NbdClientFlags.NoZeroes) != 0;
        var header = new byte[NbdWire.OptionHeaderLength];
        for (var count = 1; ; count++)
        {
            if (!await _connection.Reader.TryReadExactAsync(header, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            var magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            if (magic != NbdMagic.Option)
            {
                throw new NbdException(NbdErrorReason.ProtocolViolation, $"option magic is 0x{magic:x16}, expected IHAVEOPT");
            }

            var option = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (count > Limits.MaxOptions)
            {
                throw new NbdException(NbdErrorReason.ProtocolViolation, $"more than {Limits.MaxOptions} options before choosing an export");
            }

            if (length > Limits.MaxOptionLength)
            {
                if (option == NbdOption.ExportName)
                {
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"EXPORT_NAME of {length} bytes is longer than {Limits.MaxOptionLength}");
                }

                _logger.LogInformation("{Peer}: invalid option: {Option}: length {Length} is over the limit {Limit}", _connection.Peer, Name(option), length, Limits.MaxOptionLength);
                await _connection.Reader.SkipAsync(length, cancellationToken).ConfigureAwait(false);
                await ReplyAsync(option, NbdOptionReplyType.ErrTooBig, $"option {Name(option)} of {length} bytes is too long (limit {Limits.MaxOptionLength})", cancellationToken).ConfigureAwait(false);
                continue;
            }

            var payload = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                await _connection.Reader.ReadExactAsync(payload.AsMemory(0, (int)length), cancellationToken).ConfigureAwait(false);
                var result = await HandleOptionAsync(option, payload.AsMemory(0, (int)length), cancellationToken).ConfigureAwait(false);
                if (result.Done)
                {
                    return result.Export;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(payload);
            }
        }
    }

    private async Task<(bool Done, NegotiatedExport? Export)> HandleOptionAsync(NbdOption option, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_connection.TlsRequired && !_connection.TlsActive && option is not (NbdOption.StartTls or NbdOption.Abort))
        {
            if (option == NbdOption.ExportName)
            {
                // No reply is possible to EXPORT_NAME: the protocol's answer is to hang up.
                throw new NbdException(NbdErrorReason.TlsRequired, "EXPORT_NAME before TLS on a TLS-only server");
            }

            _logger.LogInformation("{Peer}: option {Option} refused: TLS is required", _connection.Peer, Name(option));
            await ReplyAsync(option, NbdOptionReplyType.ErrTlsRequired, $"Option 0x{(uint)option:x} not permitted before TLS", cancellationToken).ConfigureAwait(false);
            return default;
        }

        switch (option)
        {
            case NbdOption.ExportName:
                return (true, await ExportNameAsync(data, cancellationToken).ConfigureAwait(false));
            case NbdOption.Abort:
                // The client may close without reading the ACK; a failed write is not an error.
                try
                {
                    await ReplyAsync(option, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
                }
                catch (IOException)
                {
                }

                return (true, null);
            case NbdOption.List:
                await ListAsync(data, cancellationToken).ConfigureAwait(false);
                return default;
            case NbdOption.StartTls:
                await StartTlsAsync(data, cancellationToken).ConfigureAwait(false);
                return default;
            case NbdOption.Info:
            case NbdOption.Go:
                var export = await InfoOrGoAsync(option, data, cancellationToken).ConfigureAwait(false);
                return export is null ? default : (true, export);
            case NbdOption.StructuredReply:
                if (data.Length != 0)
                {
                    await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, "STRUCTURED_REPLY takes no data", cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    _structured = true;
                    await ReplyAsync(option, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
                }

                return default;
            case NbdOption.ListMetaContext:
            case NbdOption.SetMetaContext:
                await MetaContextAsync(option, data, cancellationToken).ConfigureAwait(false);
                return default;
            default:
                // Includes EXTENDED_HEADERS: QEMU 7.2 and libnbd 1.14 do not know it (formats.md §4.5).
                await RefuseAsync(option, NbdOptionReplyType.ErrUnsupported, $"Unsupported option {(uint)option} ({Name(option)})", cancellationToken).ConfigureAwait(false);
                return default;
        }
    }

    private async Task<NegotiatedExport> ExportNameAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var name = DecodeString(data.Span) ?? throw new NbdException(NbdErrorReason.ProtocolViolation, "EXPORT_NAME is not valid UTF-8");
        var export = _connection.FindExport(name) ?? throw new NbdException(NbdErrorReason.UnknownExport, $"export '{name}' not present");

        // Structured replies are only in force when negotiated; EXPORT_NAME offers no meta contexts
        // that were set for another name.
        var contexts = _contextsExport == name ? _contexts : [];
        var flags = TransmissionFlags(export, _structured);
        var length = 10 + (_noZeroes ? 0 : NbdWire.ExportNamePaddingLength);
        var reply = new byte[length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Image.VirtualSize);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)flags);
        await _connection.Stream.WriteAsync(reply, cancellationToken).ConfigureAwait(false);
        return new NegotiatedExport(export, _structured, contexts, flags);
    }

    private async Task ListAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (data.Length != 0)
        {
            await RefuseAsync(NbdOption.List, NbdOptionReplyType.ErrInvalid, "LIST takes no data", cancellationToken).ConfigureAwait(false);
            return;
        }

        foreach (var export in _connection.Exports)
        {
            var name = Encoding.UTF8.GetBytes(export.Name);
            var description = Encoding.UTF8.GetBytes(export.Description ?? string.Empty);
            var body = new byte[4 + name.Length + description.Length];
            BinaryPrimitives.WriteUInt32BigEndian(body, (uint)name.Length);
            name.CopyTo(body, 4);
            description.CopyTo(body, 4 + name.Length);
            await ReplyAsync(NbdOption.List, NbdOptionReplyType.Server, body, cancellationToken).ConfigureAwait(false);
        }

        await ReplyAsync(NbdOption.List, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
    }

    private async Task StartTlsAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var credentials = _connection.Tls;
        if (data.Length != 0)
        {
            await RefuseAsync(NbdOption.StartTls, NbdOptionReplyType.ErrInvalid, "STARTTLS takes no data", cancellationToken).ConfigureAwait(false);
            return;
        }

        if (credentials is null)
        {
            await RefuseAsync(NbdOption.StartTls, NbdOptionReplyType.ErrPolicy, "TLS not configured", cancellationToken).ConfigureAwait(false);
            return;
        }

        if (_connection.TlsActive)
        {
            await RefuseAsync(NbdOption.StartTls, NbdOptionReplyType.ErrInvalid, "TLS is already active", cancellationToken).ConfigureAwait(false);
            return;
        }

        await ReplyAsync(NbdOption.StartTls, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
        var ssl = new SslStream(_connection.Stream, leaveInnerStreamOpen: false);
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificate = credentials.Certificate,
            ClientCertificateRequired = credentials.VerifyPeer,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, certificate, _, errors) => credentials.Validate(certificate, errors, hostName: null, credentials.VerifyPeer),
        };
        try
        {
            await ssl.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new NbdException(NbdErrorReason.TlsRequired, $"TLS handshake failed: {e.Message}", e);
        }

        _connection.UpgradeToTls(ssl);

        // proto.md: everything negotiated before STARTTLS is forgotten.
        _structured = false;
        _contexts = [];
        _contextsExport = null;
        _logger.LogDebug("{Peer}: TLS established ({Protocol})", _connection.Peer, ssl.SslProtocol);
    }

    private async Task<NegotiatedExport?> InfoOrGoAsync(NbdOption option, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        // u32 name length, name, u16 count, count × u16 info type.
        var span = data.Span;
        if (span.Length < 6)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, $"{Name(option)}: {span.Length} bytes is too short", cancellationToken).ConfigureAwait(false);
            return null;
        }

        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > span.Length - 6)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, $"{Name(option)}: name length {nameLength} runs past the option's {span.Length} bytes", cancellationToken).ConfigureAwait(false);
            return null;
        }

        var name = DecodeString(span.Slice(4, (int)nameLength));
        var rest = span[(4 + (int)nameLength)..];
        var count = BinaryPrimitives.ReadUInt16BigEndian(rest);
        if (rest.Length != 2 + (2 * count))
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, $"{Name(option)}: {count} information requests do not fill the remaining {rest.Length - 2} bytes", cancellationToken).ConfigureAwait(false);
            return null;
        }

        if (name is null)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, $"{Name(option)}: export name is not valid UTF-8", cancellationToken).ConfigureAwait(false);
            return null;
        }

        var export = _connection.FindExport(name);
        if (export is null)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrUnknown, $"export '{name}' not present", cancellationToken).ConfigureAwait(false);
            return null;
        }

        var wantName = false;
        var wantDescription = false;
        for (var i = 0; i < count; i++)
        {
            var type = (NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(rest[(2 + (2 * i))..]);
            wantName |= type == NbdInfoType.Name;
            wantDescription |= type == NbdInfoType.Description;
        }

        if (wantName)
        {
            var bytes = Encoding.UTF8.GetBytes(export.Name);
            var body = new byte[2 + bytes.Length];
            BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)NbdInfoType.Name);
            bytes.CopyTo(body, 2);
            await ReplyAsync(option, NbdOptionReplyType.Info, body, cancellationToken).ConfigureAwait(false);
        }

        if (wantDescription && export.Description is not null)
        {
            var bytes = Encoding.UTF8.GetBytes(export.Description);
            var body = new byte[2 + bytes.Length];
            BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)NbdInfoType.Description);
            bytes.CopyTo(body, 2);
            await ReplyAsync(option, NbdOptionReplyType.Info, body, cancellationToken).ConfigureAwait(false);
        }

        // Block size is always sent, requested or not, as qemu-nbd does: the values are the
        // protocol defaults a client assumes anyway, so a client that did not ask loses nothing.
        var blockSize = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(blockSize, (ushort)NbdInfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), BlockSizes.Minimum);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), BlockSizes.Preferred);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), (uint)Limits.MaxPayloadLength);
        await ReplyAsync(option, NbdOptionReplyType.Info, blockSize, cancellationToken).ConfigureAwait(false);

        var flags = TransmissionFlags(export, _structured);
        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)NbdInfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Image.VirtualSize);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), (ushort)flags);
        await ReplyAsync(option, NbdOptionReplyType.Info, info, cancellationToken).ConfigureAwait(false);
        await ReplyAsync(option, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
        if (option == NbdOption.Info)
        {
            return null;
        }

        // Contexts selected for another export do not carry over (proto.md, NBD_OPT_GO).
        var contexts = _contextsExport == name ? _contexts : [];
        return new NegotiatedExport(export, _structured, contexts, flags);
    }

    private async Task MetaContextAsync(NbdOption option, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var listing = option == NbdOption.ListMetaContext;
        if (!listing && !_structured)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrInvalid, "SET_META_CONTEXT needs structured replies first", cancellationToken).ConfigureAwait(false);
            return;
        }

        var parsed = ParseMetaContextRequest(data.Span, out var name, out var queries);
        if (parsed is not null)
        {
            await RefuseAsync(option, parsed.Value.Type, $"{Name(option)}: {parsed.Value.Why}", cancellationToken).ConfigureAwait(false);
            return;
        }

        var export = _connection.FindExport(name!);
        if (export is null)
        {
            await RefuseAsync(option, NbdOptionReplyType.ErrUnknown, $"export '{name}' not present", cancellationToken).ConfigureAwait(false);
            return;
        }

        var selected = MetaContext.Select(export, queries!, listing);
        foreach (var context in selected)
        {
            var bytes = Encoding.UTF8.GetBytes(context.Name);
            var body = new byte[4 + bytes.Length];

            // LIST replies carry id 0 (formats.md §4.2: "id field 0, ignore it").
            BinaryPrimitives.WriteUInt32BigEndian(body, listing ? 0 : context.Id);
            bytes.CopyTo(body, 4);
            await ReplyAsync(option, NbdOptionReplyType.MetaContext, body, cancellationToken).ConfigureAwait(false);
        }

        if (!listing)
        {
            _contexts = selected;
            _contextsExport = name;
        }

        await ReplyAsync(option, NbdOptionReplyType.Ack, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Parses <c>u32 namelen, name, u32 nq, nq × (u32 len, query)</c>; null when valid, else the refusal.</summary>
    private (NbdOptionReplyType Type, string Why)? ParseMetaContextRequest(ReadOnlySpan<byte> span, out string? name, out List<string>? queries)
    {
        name = null;
        queries = null;
        if (span.Length < 8)
        {
            return (NbdOptionReplyType.ErrInvalid, $"{span.Length} bytes is too short");
        }

        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > span.Length - 8)
        {
            return (NbdOptionReplyType.ErrInvalid, $"name length {nameLength} runs past the option's {span.Length} bytes");
        }

        name = DecodeString(span.Slice(4, (int)nameLength));
        if (name is null)
        {
            return (NbdOptionReplyType.ErrInvalid, "export name is not valid UTF-8");
        }

        var position = 4 + (int)nameLength;
        var count = BinaryPrimitives.ReadUInt32BigEndian(span[position..]);
        position += 4;
        if (count > Limits.MaxMetaContextQueries)
        {
            return (NbdOptionReplyType.ErrTooBig, $"{count} queries is more than the limit {Limits.MaxMetaContextQueries}");
        }

        queries = new List<string>((int)count);
        for (var i = 0; i < count; i++)
        {
            if (span.Length - position < 4)
            {
                return (NbdOptionReplyType.ErrInvalid, $"query {i} starts past the end of the option");
            }

            var length = BinaryPrimitives.ReadUInt32BigEndian(span[position..]);
            position += 4;
            if (length > span.Length - position)
            {
                return (NbdOptionReplyType.ErrInvalid, $"query {i} of {length} bytes runs past the end of the option");
            }

            if (length > NbdWire.MaxStringLength)
            {
                return (NbdOptionReplyType.ErrTooBig, $"query {i} is longer than {NbdWire.MaxStringLength} bytes");
            }

            var query = DecodeString(span.Slice(position, (int)length));
            if (query is null)
            {
                return (NbdOptionReplyType.ErrInvalid, $"query {i} is not valid UTF-8");
            }

            queries.Add(query);
            position += (int)length;
        }

        if (position != span.Length)
        {
            return (NbdOptionReplyType.ErrInvalid, $"{span.Length - position} bytes follow the last query");
        }

        return null;
    }

    /// <summary>The transmission flags of an export, mirroring qemu-nbd 7.2's choices (formats.md §4.3).</summary>
    internal static NbdTransmissionFlags TransmissionFlags(NbdExport export, bool structured)
    {
        var flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendCache;
        if (export.ReadOnly)
        {
            flags |= NbdTransmissionFlags.ReadOnly;
        }
        else
        {
            flags |= NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero;
        }

        if (structured)
        {
            flags |= NbdTransmissionFlags.SendDf;
        }

        if (export.MultiConn)
        {
            flags |= NbdTransmissionFlags.CanMultiConn;
        }

        return flags;
    }

    private async Task RefuseAsync(NbdOption option, NbdOptionReplyType error, string message, CancellationToken cancellationToken)
    {
        _logger.LogInformation("{Peer}: invalid option: {Option}: {Why}", _connection.Peer, Name(option), message);
        await ReplyAsync(option, error, message, cancellationToken).ConfigureAwait(false);
    }

    private Task ReplyAsync(NbdOption option, NbdOptionReplyType type, string? message, CancellationToken cancellationToken)
        => ReplyAsync(option, type, message is null ? [] : Encoding.UTF8.GetBytes(message), cancellationToken);

    private async Task ReplyAsync(NbdOption option, NbdOptionReplyType type, byte[] body, CancellationToken cancellationToken)
    {
        var frame = new byte[NbdWire.OptionReplyHeaderLength + body.Length];
        BinaryPrimitives.WriteUInt64BigEndian(frame, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(12), (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(16), (uint)body.Length);
        body.CopyTo(frame, NbdWire.OptionReplyHeaderLength);
        await _connection.Stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static string? DecodeString(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static string Name(NbdOption option) => Enum.IsDefined(option) ? option.ToString() : "<unknown>";
}
