using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Client;

// The client side of the fixed-newstyle handshake (formats.md §4.2).
public sealed partial class NbdClient
{
    /// <summary>
    /// Connects, negotiates (STARTTLS when credentials are given, structured replies, meta
    /// contexts) and opens the export with NBD_OPT_GO.
    /// </summary>
    /// <exception cref="NbdException">The server refused (UnknownExport, TlsRequired, OptionRefused) or broke the protocol.</exception>
    /// <exception cref="SocketException">The server cannot be reached.</exception>
    public static async Task<NbdClient> ConnectAsync(NbdConnectOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var stream = await OpenAsync(options.EndPoint, cancellationToken).ConfigureAwait(false);
        var client = new NbdClient(stream);
        try
        {
            await client.NegotiateAsync(options, selectContexts: true, cancellationToken).ConfigureAwait(false);
            await client.GoAsync(options, cancellationToken).ConfigureAwait(false);
            client.StartReplyLoop();
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Lists the server's exports (NBD_OPT_LIST), then ends the session with NBD_OPT_ABORT.</summary>
    public static async Task<IReadOnlyList<NbdExportListing>> ListExportsAsync(NbdConnectOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var stream = await OpenAsync(options.EndPoint, cancellationToken).ConfigureAwait(false);
        var client = new NbdClient(stream);
        await using (client.ConfigureAwait(false))
        {
            await client.NegotiateAsync(options, selectContexts: true, cancellationToken).ConfigureAwait(false);
            await client.SendOptionAsync(NbdOption.List, [], cancellationToken).ConfigureAwait(false);
            var result = new List<NbdExportListing>();
            while (true)
            {
                var (type, body) = await client.ReadOptionReplyAsync(NbdOption.List, cancellationToken).ConfigureAwait(false);
                if (type == NbdOptionReplyType.Ack)
                {
                    break;
                }

                if (type != NbdOptionReplyType.Server || body.Length < 4)
                {
                    throw Refusal(NbdOption.List, type, body);
                }

                var nameLength = BinaryPrimitives.ReadUInt32BigEndian(body);
                if (nameLength > body.Length - 4)
                {
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"LIST reply: name length {nameLength} runs past the reply's {body.Length} bytes");
                }

                var name = Encoding.UTF8.GetString(body, 4, (int)nameLength);
                var description = body.Length > 4 + nameLength ? Encoding.UTF8.GetString(body, 4 + (int)nameLength, body.Length - 4 - (int)nameLength) : null;
                result.Add(new NbdExportListing(name, description));
            }

            await client.SendOptionAsync(NbdOption.Abort, [], cancellationToken).ConfigureAwait(false);
            client.State = NbdClientState.Closed;
            return result;
        }
    }

    /// <summary>
    /// The contexts the server offers for <paramref name="options"/>' export (NBD_OPT_LIST_META_CONTEXT
    /// with no query: every context), then ends the session with NBD_OPT_ABORT.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ListMetaContextsAsync(NbdConnectOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var stream = await OpenAsync(options.EndPoint, cancellationToken).ConfigureAwait(false);
        var client = new NbdClient(stream);
        await using (client.ConfigureAwait(false))
        {
            await client.NegotiateAsync(options, selectContexts: false, cancellationToken).ConfigureAwait(false);
            var contexts = await client.MetaContextAsync(NbdOption.ListMetaContext, options.ExportName, [], cancellationToken).ConfigureAwait(false);
            await client.SendOptionAsync(NbdOption.Abort, [], cancellationToken).ConfigureAwait(false);
            client.State = NbdClientState.Closed;
            return [.. contexts.Keys];
        }
    }

    private static async Task<Stream> OpenAsync(EndPoint endPoint, CancellationToken cancellationToken)
    {
        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : endPoint is DnsEndPoint
                ? new Socket(SocketType.Stream, ProtocolType.Tcp)
                : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            if (socket.AddressFamily != AddressFamily.Unix)
            {
                socket.NoDelay = true;
            }

            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Greeting, client flags, STARTTLS, structured replies and SET_META_CONTEXT.</summary>
    private async Task NegotiateAsync(NbdConnectOptions options, bool selectContexts, CancellationToken cancellationToken)
    {
        var greeting = new byte[NbdWire.GreetingLength];
        await _reader.ReadExactAsync(greeting, cancellationToken).ConfigureAwait(false);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(greeting);
        var second = BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8));
        if (magic != NbdMagic.Init)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"server greeting magic is 0x{magic:x16}, expected NBDMAGIC");
        }

        if (second != NbdMagic.Option)
        {
            throw new NbdException(NbdErrorReason.Unsupported, "the server speaks the oldstyle handshake, which Tidemark does not");
        }

        var serverFlags = (NbdHandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
        if ((serverFlags & NbdHandshakeFlags.FixedNewstyle) == 0)
        {
            throw new NbdException(NbdErrorReason.Unsupported, "the server does not offer the fixed newstyle handshake");
        }

        var clientFlags = NbdClientFlags.FixedNewstyle | ((serverFlags & NbdHandshakeFlags.NoZeroes) != 0 ? NbdClientFlags.NoZeroes : 0);
        _noZeroes = (clientFlags & NbdClientFlags.NoZeroes) != 0;
        var flagBytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flagBytes, (uint)clientFlags);
        await _stream.WriteAsync(flagBytes, cancellationToken).ConfigureAwait(false);

        if (options.Tls is not null)
        {
            await StartTlsAsync(options, cancellationToken).ConfigureAwait(false);
        }

        if (options.StructuredReplies)
        {
            await SendOptionAsync(NbdOption.StructuredReply, [], cancellationToken).ConfigureAwait(false);
            var (type, body) = await ReadOptionReplyAsync(NbdOption.StructuredReply, cancellationToken).ConfigureAwait(false);
            if (type == NbdOptionReplyType.Ack)
            {
                Structured = true;
            }
            else if (type != NbdOptionReplyType.ErrUnsupported)
            {
                throw Refusal(NbdOption.StructuredReply, type, body);
            }
        }

        if (selectContexts && options.MetaContexts.Count > 0)
        {
            if (!Structured)
            {
                throw new NbdException(NbdErrorReason.Unsupported, "the server has no structured replies, so no meta contexts");
            }

            MetaContexts = await MetaContextAsync(NbdOption.SetMetaContext, options.ExportName, options.MetaContexts, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task StartTlsAsync(NbdConnectOptions options, CancellationToken cancellationToken)
    {
        var credentials = options.Tls!;
        await SendOptionAsync(NbdOption.StartTls, [], cancellationToken).ConfigureAwait(false);
        var (type, body) = await ReadOptionReplyAsync(NbdOption.StartTls, cancellationToken).ConfigureAwait(false);
        if (type != NbdOptionReplyType.Ack)
        {
            throw new NbdException(NbdErrorReason.TlsRequired, $"the server refused STARTTLS: {Describe(type, body)}");
        }

        var ssl = new SslStream(_stream, leaveInnerStreamOpen: false);
        var authentication = new SslClientAuthenticationOptions
        {
            TargetHost = options.TlsHostName,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ClientCertificates = credentials.Certificate is null ? null : [credentials.Certificate],
            LocalCertificateSelectionCallback = (_, _, _, _, _) => credentials.Certificate!,
            RemoteCertificateValidationCallback = (_, certificate, _, errors) => credentials.Validate(certificate, errors, options.TlsHostName, required: true),
        };
        if (credentials.Certificate is null)
        {
            authentication.LocalCertificateSelectionCallback = null;
        }

        try
        {
            await ssl.AuthenticateAsClientAsync(authentication, cancellationToken).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new NbdException(NbdErrorReason.TlsRequired, $"TLS handshake with the server failed: {e.Message}", e);
        }

        _reader.Replace(ssl);
        _stream = ssl;
        IsTls = true;
    }

    private async Task<Dictionary<string, uint>> MetaContextAsync(NbdOption option, string export, IReadOnlyList<string> queries, CancellationToken cancellationToken)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var encoded = queries.Select(Encoding.UTF8.GetBytes).ToList();
        var body = new byte[4 + name.Length + 4 + encoded.Sum(q => 4 + q.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(body, (uint)name.Length);
        name.CopyTo(body, 4);
        var position = 4 + name.Length;
        BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(position), (uint)encoded.Count);
        position += 4;
        foreach (var q in encoded)
        {
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(position), (uint)q.Length);
            q.CopyTo(body, position + 4);
            position += 4 + q.Length;
        }

        await SendOptionAsync(option, body, cancellationToken).ConfigureAwait(false);
        var result = new Dictionary<string, uint>(StringComparer.Ordinal);
        while (true)
        {
            var (type, reply) = await ReadOptionReplyAsync(option, cancellationToken).ConfigureAwait(false);
            if (type == NbdOptionReplyType.Ack)
            {
                return result;
            }

            if (type != NbdOptionReplyType.MetaContext || reply.Length < 4)
            {
                throw Refusal(option, type, reply);
            }

            result[Encoding.UTF8.GetString(reply, 4, reply.Length - 4)] = BinaryPrimitives.ReadUInt32BigEndian(reply);
        }
    }

    private async Task GoAsync(NbdConnectOptions options, CancellationToken cancellationToken)
    {
        var name = Encoding.UTF8.GetBytes(options.ExportName);
        NbdInfoType[] wanted = [NbdInfoType.Name, NbdInfoType.Description, NbdInfoType.BlockSize];
        var body = new byte[4 + name.Length + 2 + (2 * wanted.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(body, (uint)name.Length);
        name.CopyTo(body, 4);
        BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(4 + name.Length), (ushort)wanted.Length);
        for (var i = 0; i < wanted.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(4 + name.Length + 2 + (2 * i)), (ushort)wanted[i]);
        }

        await SendOptionAsync(NbdOption.Go, body, cancellationToken).ConfigureAwait(false);
        var haveExport = false;
        ExportName = options.ExportName;
        while (true)
        {
            var (type, reply) = await ReadOptionReplyAsync(NbdOption.Go, cancellationToken).ConfigureAwait(false);
            if (type == NbdOptionReplyType.Ack)
            {
                break;
            }

            if (type != NbdOptionReplyType.Info)
            {
                throw Refusal(NbdOption.Go, type, reply);
            }

            if (reply.Length < 2)
            {
                throw new NbdException(NbdErrorReason.ProtocolViolation, "GO: an INFO reply without a type");
            }

            switch ((NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(reply))
            {
                case NbdInfoType.Export when reply.Length == 12:
                    Size = (long)BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(2));
                    TransmissionFlags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(10));
                    haveExport = true;
                    break;
                case NbdInfoType.Name:
                    ExportName = Encoding.UTF8.GetString(reply, 2, reply.Length - 2);
                    break;
                case NbdInfoType.Description:
                    Description = Encoding.UTF8.GetString(reply, 2, reply.Length - 2);
                    break;
                case NbdInfoType.BlockSize when reply.Length == 14:
                    MinimumBlockSize = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(2));
                    PreferredBlockSize = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(6));
                    MaximumBlockSize = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(10));
                    break;
                case NbdInfoType.Export or NbdInfoType.BlockSize:
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"GO: INFO reply of {reply.Length} bytes has the wrong length for its type");
                default:
                    // Unknown information types are ignored (proto.md).
                    break;
            }
        }

        if (!haveExport)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, "GO: the server acknowledged without NBD_INFO_EXPORT");
        }

        State = NbdClientState.Ready;
    }

    private async Task SendOptionAsync(NbdOption option, byte[] body, CancellationToken cancellationToken)
    {
        var frame = new byte[NbdWire.OptionHeaderLength + body.Length];
        BinaryPrimitives.WriteUInt64BigEndian(frame, NbdMagic.Option);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(12), (uint)body.Length);
        body.CopyTo(frame, NbdWire.OptionHeaderLength);
        await _stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
    }

    // Longest option reply accepted: a LIST entry or INFO carries at most two 4 KiB strings.
    private const int MaxOptionReplyLength = 64 * 1024;

    private async Task<(NbdOptionReplyType Type, byte[] Body)> ReadOptionReplyAsync(NbdOption option, CancellationToken cancellationToken)
    {
        var header = new byte[NbdWire.OptionReplyHeaderLength];
        await _reader.ReadExactAsync(header, cancellationToken).ConfigureAwait(false);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(header);
        var echoed = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        var type = (NbdOptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        if (magic != NbdMagic.OptionReply)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"option reply magic is 0x{magic:x16}");
        }

        if (echoed != option)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"reply to option {option} names option {(uint)echoed}");
        }

        if (length > MaxOptionReplyLength)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"reply to option {option} is {length} bytes, more than {MaxOptionReplyLength}");
        }

        var body = new byte[length];
        await _reader.ReadExactAsync(body, cancellationToken).ConfigureAwait(false);
        return (type, body);
    }

    private static NbdException Refusal(NbdOption option, NbdOptionReplyType type, byte[] body)
    {
        var reason = type switch
        {
            NbdOptionReplyType.ErrUnknown => NbdErrorReason.UnknownExport,
            NbdOptionReplyType.ErrTlsRequired => NbdErrorReason.TlsRequired,
            NbdOptionReplyType.ErrUnsupported => NbdErrorReason.Unsupported,
            _ when ((uint)type & 0x80000000) != 0 => NbdErrorReason.OptionRefused,
            _ => NbdErrorReason.ProtocolViolation,
        };
        return new NbdException(reason, $"server replied to {option}: {Describe(type, body)}");
    }

    private static string Describe(NbdOptionReplyType type, byte[] body)
    {
        var name = Enum.IsDefined(type) ? type.ToString() : $"0x{(uint)type:x}";
        return ((uint)type & 0x80000000) != 0 && body.Length > 0 ? $"{name}: {Encoding.UTF8.GetString(body)}" : name;
    }
}
