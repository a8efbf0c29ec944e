using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Client;

/// <summary>
/// A client of libvirt's remote protocol, for Tidemark's daemon or a real libvirtd: opens the
/// connection as virsh does (AUTH_LIST, SUPPORTS_FEATURE 10, CONNECT_OPEN, SUPPORTS_FEATURE
/// 14 and 15, REGISTER_CLOSE_CALLBACK), then offers one typed method per procedure of
/// libvirt-rpc.md §5. Calls may run concurrently (they are pipelined and matched by serial);
/// a server error is a <see cref="LibvirtError"/>, a lost connection a
/// <see cref="RemoteProtocolException"/> with <see cref="RemoteProtocolErrorReason.ConnectionClosed"/>.
/// </summary>
public sealed partial class LibvirtClient : IAsyncDisposable
{
    private readonly RemoteCallChannel _channel;
    private bool _closeCallbackRegistered;
    private int _closed;

    private LibvirtClient(RemoteCallChannel channel, LibvirtUri uri)
    {
        _channel = channel;
        Uri = uri;
    }

    /// <summary>The URI this client opened.</summary>
    public LibvirtUri Uri { get; }

    /// <summary>The server supports event callbacks (feature 14).</summary>
    public bool SupportsEventCallbacks { get; private set; }

    /// <summary>The server answers keepalive (feature 10); this client then pings it when idle.</summary>
    public bool SupportsKeepalive { get; private set; }

    /// <summary>Lifecycle events for callbacks this client registered. Handlers run on the receive loop: keep them short.</summary>
    public event EventHandler<DomainLifecycleEventArgs>? LifecycleEvent;

    /// <summary>Job-completed events for callbacks this client registered. Handlers run on the receive loop: keep them short.</summary>
    public event EventHandler<JobCompletedEventArgs>? JobCompleted;

    /// <summary>Device-added and device-removed events for callbacks this client registered. Handlers run on the receive loop: keep them short.</summary>
    public event EventHandler<DeviceEventArgs>? DeviceEvent;

    /// <summary>io-error and io-error-reason events for callbacks this client registered. Handlers run on the receive loop: keep them short.</summary>
    public event EventHandler<IoErrorEventArgs>? IoErrorEvent;

    /// <summary>Connects to <paramref name="uri"/> and opens it (see <see cref="LibvirtUri.Parse"/>).</summary>
    /// <exception cref="LibvirtError">The socket cannot be reached, or the server refused to open.</exception>
    public static async Task<LibvirtClient> ConnectAsync(string uri, string? defaultSocket = null, CancellationToken cancellationToken = default)
    {
        var parsed = LibvirtUri.Parse(uri, defaultSocket);
        LibvirtClient? client = null;
        var channel = await RemoteCallChannel.ConnectAsync(parsed.SocketPath, m => client?.OnEvent(m), cancellationToken).ConfigureAwait(false);
        client = new LibvirtClient(channel, parsed);
        try
        {
            await client.OpenAsync(cancellationToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task OpenAsync(CancellationToken cancellationToken)
    {
        var auth = await _channel.CallAsync(RemoteProcedure.AuthList, null, (ref XdrReader r) =>
        {
            var count = r.ReadArrayCount(RemoteWire.MaxAuthTypes, 4, "auth types");
            var types = new int[count];
            for (var i = 0; i < count; i++)
            {
                types[i] = r.ReadInt32();
            }

            return types;
        }, cancellationToken).ConfigureAwait(false);
        if (auth.Length > 0 && !auth.Contains((int)RemoteAuthType.None))
        {
            throw LibvirtError.Create(VirErrorNumber.OperationUnsupported, VirErrorDomain.Rpc, $"the server requires authentication ({string.Join(", ", auth)}), which this client does not offer");
        }

        SupportsKeepalive = await SupportsFeatureAsync(RemoteFeature.ProgramKeepalive, cancellationToken).ConfigureAwait(false);
        await _channel.CallAsync(RemoteProcedure.ConnectOpen, w =>
        {
            w.WriteOptionalString(Uri.Name, RemoteWire.MaxStringLength);
            w.WriteUInt32(0);
        }, cancellationToken).ConfigureAwait(false);
        SupportsEventCallbacks = await SupportsFeatureAsync(RemoteFeature.RemoteEventCallback, cancellationToken).ConfigureAwait(false);
        if (await SupportsFeatureAsync(RemoteFeature.RemoteCloseCallback, cancellationToken).ConfigureAwait(false))
        {
            await _channel.CallAsync(RemoteProcedure.ConnectRegisterCloseCallback, null, cancellationToken).ConfigureAwait(false);
            _closeCallbackRegistered = true;
        }

        if (SupportsKeepalive)
        {
            _channel.StartKeepalive();
        }
    }

    /// <summary>CONNECT_SUPPORTS_FEATURE.</summary>
    public Task<bool> SupportsFeatureAsync(RemoteFeature feature, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectSupportsFeature, w => w.WriteInt32((int)feature), (ref XdrReader r) => r.ReadInt32() != 0, cancellationToken);

    /// <summary>Closes as virsh does (UNREGISTER_CLOSE_CALLBACK, CONNECT_CLOSE), then the socket.</summary>
    public async Task CloseAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        try
        {
            if (_closeCallbackRegistered)
            {
                await _channel.CallAsync(RemoteProcedure.ConnectUnregisterCloseCallback, null, cancellationToken).ConfigureAwait(false);
            }

            await _channel.CallAsync(RemoteProcedure.ConnectClose, null, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await _channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Closes politely if the connection is still up; a lost connection is only released.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await CloseAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RemoteProtocolException or LibvirtError)
        {
            await _channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: events then arrive through <see cref="LifecycleEvent"/> / <see cref="JobCompleted"/>.</summary>
    public Task<int> RegisterDomainEventAsync(DomainEventId eventId, RemoteDomain? domain = null, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectDomainEventCallbackRegisterAny, w =>
        {
            w.WriteInt32((int)eventId);
            RemoteDomain.WriteOptional(w, domain);
        }, (ref XdrReader r) => r.ReadInt32(), cancellationToken);

    /// <summary>CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY.</summary>
    public Task DeregisterDomainEventAsync(int callbackId, CancellationToken cancellationToken = default) =>
        _channel.CallAsync(RemoteProcedure.ConnectDomainEventCallbackDeregisterAny, w => w.WriteInt32(callbackId), cancellationToken);

    private void OnEvent(RemoteMessage message)
    {
        if (message.Header.Program != RemoteWire.RemoteProgram)
        {
            return;
        }

        var reader = new XdrReader(message.Payload.Span);
        switch ((RemoteProcedure)message.Header.Procedure)
        {
            case RemoteProcedure.DomainEventCallbackLifecycle:
                {
                    var id = reader.ReadInt32();
                    var domain = RemoteDomain.Read(ref reader);
                    var ev = (DomainLifecycleEvent)reader.ReadInt32();
                    var detail = reader.ReadInt32();
                    LifecycleEvent?.Invoke(this, new DomainLifecycleEventArgs(id, domain, ev, detail));
                    break;
                }

            case RemoteProcedure.DomainEventCallbackJobCompleted:
                {
                    var id = reader.ReadInt32();
                    var domain = RemoteDomain.Read(ref reader);
                    var stats = TypedParameter.ReadList(ref reader, RemoteWire.MaxJobStats, "job statistics");
                    JobCompleted?.Invoke(this, new JobCompletedEventArgs(id, domain, stats));
                    break;
                }

            case RemoteProcedure.DomainEventCallbackDeviceAdded or RemoteProcedure.DomainEventCallbackDeviceRemoved:
                {
                    var id = reader.ReadInt32();
                    var domain = RemoteDomain.Read(ref reader);
                    var alias = reader.ReadString(RemoteWire.MaxStringLength);
                    DeviceEvent?.Invoke(this, new DeviceEventArgs(id, domain, alias, (RemoteProcedure)message.Header.Procedure == RemoteProcedure.DomainEventCallbackDeviceAdded));
                    break;
                }

            case RemoteProcedure.DomainEventCallbackIoError or RemoteProcedure.DomainEventCallbackIoErrorReason:
                {
                    var id = reader.ReadInt32();
                    var domain = RemoteDomain.Read(ref reader);
                    var source = reader.ReadString(RemoteWire.MaxStringLength);
                    var alias = reader.ReadString(RemoteWire.MaxStringLength);
                    var action = (IoErrorAction)reader.ReadInt32();
                    var reason = (RemoteProcedure)message.Header.Procedure == RemoteProcedure.DomainEventCallbackIoErrorReason ? reader.ReadString(RemoteWire.MaxStringLength) : null;
                    IoErrorEvent?.Invoke(this, new IoErrorEventArgs(id, domain, source, alias, action, reason));
                    break;
                }

            default:
                // Events of other kinds (a real libvirtd may send them for IDs registered by
                // someone else's code) are not this client's business.
                break;
        }
    }
}
