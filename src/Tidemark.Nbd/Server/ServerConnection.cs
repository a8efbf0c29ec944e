using System.Net.Security;
using Microsoft.Extensions.Logging;

namespace Tidemark.Nbd.Server;

/// <summary>Where a server connection is in its life; Broken and Closed are terminal.</summary>
internal enum ServerConnectionState
{
    /// <summary>Option haggling.</summary>
    Handshake,

    /// <summary>Serving requests on the chosen export.</summary>
    Transmission,

    /// <summary>The client left cleanly (ABORT, DISC or end of stream between messages).</summary>
    Closed,

    /// <summary>Framing was lost or the transport failed; the connection is dropped, never reused.</summary>
    Broken,
}

/// <summary>
/// One client connection of an <see cref="NbdServer"/>: owns the stream (plain, then maybe TLS),
/// runs the handshake and the transmission phase, and classifies how it ended, in one place.
/// No failure of one connection reaches the server or another connection.
/// </summary>
internal sealed class ServerConnection : IAsyncDisposable
{
    private readonly NbdServer _server;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _end = new();
    private NbdExport? _export;

    public ServerConnection(NbdServer server, Stream stream, string peer, ILogger logger)
    {
        _server = server;
        Stream = stream;
        Peer = peer;
        _logger = logger;
        Reader = new NbdStreamReader(stream, ReadBufferSize);
        Blocks = stream is BlockingSocketStream;
    }

    /// <summary>
    /// The transport blocks the calling thread (<see cref="BlockingSocketStream"/>, maybe under
    /// TLS): the connection runs on a thread of its own, which may also wait synchronously.
    /// </summary>
    public bool Blocks { get; }

    /// <summary>
    /// 256 KiB: holds a burst of pipelined request headers (nbdcopy sends 64 at once) and small
    /// writes; payloads of 256 KiB and more bypass it and are read straight into their buffers.
    /// </summary>
    private const int ReadBufferSize = 256 * 1024;

    public Stream Stream { get; private set; }

    public NbdStreamReader Reader { get; }

    public string Peer { get; }

    public ServerConnectionState State { get; private set; } = ServerConnectionState.Handshake;

    public NbdServerLimits Limits => _server.Options.Limits;

    public NbdTlsCredentials? Tls => _server.Options.Tls;

    /// <summary>The server has credentials, so nothing but STARTTLS is answered before TLS.</summary>
    public bool TlsRequired => Tls is not null;

    public bool TlsActive { get; private set; }

    public IEnumerable<NbdExport> Exports => _server.Exports;

    /// <summary>The export the connection is serving, once negotiated; null before.</summary>
    public NbdExport? Export => Volatile.Read(ref _export);

    /// <summary>Ends the connection (its export is going away): requests in flight finish, no more are read.</summary>
    public void End()
    {
        try
        {
            _end.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public NbdExport? FindExport(string name) => _server.FindExport(name);

    public void UpgradeToTls(SslStream ssl)
    {
        Reader.Replace(ssl);
        Stream = ssl;
        TlsActive = true;
    }

    /// <summary>Serves the connection to its end. Never throws except for cancellation by the server.</summary>
    public async Task RunAsync(CancellationToken serverShutdown)
    {
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(serverShutdown, _end.Token);
        var cancellationToken = ending.Token;
        using var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        handshakeTimeout.CancelAfter(Limits.HandshakeTimeout);
        try
        {
            var negotiated = await new NewstyleHandshake(this, _logger).RunAsync(handshakeTimeout.Token).ConfigureAwait(false);
            if (negotiated is null)
            {
                State = ServerConnectionState.Closed;
                _logger.LogDebug("{Peer}: client left during the handshake", Peer);
                return;
            }

            // Published before the export is looked up again: a removal either sees this
            // connection using the export, or has already taken the export away, which this
            // second look sees (NbdServer.RemoveExportAsync).
            Volatile.Write(ref _export, negotiated.Export);
            if (!ReferenceEquals(_server.FindExport(negotiated.Export.Name), negotiated.Export))
            {
                State = ServerConnectionState.Closed;
                _logger.LogDebug("{Peer}: export '{Export}' was removed during the handshake", Peer, negotiated.Export.Name);
                return;
            }

            State = ServerConnectionState.Transmission;
            _logger.LogDebug("{Peer}: serving export '{Export}' (structured replies: {Structured}, contexts: {Contexts})", Peer, negotiated.Export.Name, negotiated.Structured, negotiated.Contexts.Count);
            using var transmission = new TransmissionPhase(this, negotiated, _logger);
            await transmission.RunAsync(cancellationToken).ConfigureAwait(false);
            State = ServerConnectionState.Closed;
        }
        catch (OperationCanceledException) when (handshakeTimeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            State = ServerConnectionState.Broken;
            _logger.LogInformation("{Peer}: handshake not finished within {Timeout}", Peer, Limits.HandshakeTimeout);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            State = ServerConnectionState.Broken;
            _logger.LogDebug("{Peer}: connection closed by server shutdown", Peer);
        }
        catch (NbdException e) when (e.Reason == NbdErrorReason.ConnectionClosed)
        {
            State = ServerConnectionState.Broken;
            _logger.LogDebug("{Peer}: {Message}", Peer, e.Message);
        }
        catch (NbdException e)
        {
            // Bad input: the cause is logged at information level, then the connection is dropped.
            State = ServerConnectionState.Broken;
            _logger.LogInformation("{Peer}: dropping connection: {Message}", Peer, e.Message);
        }
        catch (IOException e)
        {
            // A peer reset stays quiet; other transport failures are worth a line.
            State = ServerConnectionState.Broken;
            _logger.LogDebug("{Peer}: connection lost: {Message}", Peer, e.Message);
        }
        catch (Exception e)
        {
            State = ServerConnectionState.Broken;
            _logger.LogWarning(e, "{Peer}: connection failed unexpectedly", Peer);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _end.Dispose();
        Reader.Dispose();
        await Stream.DisposeAsync().ConfigureAwait(false);
    }
}
