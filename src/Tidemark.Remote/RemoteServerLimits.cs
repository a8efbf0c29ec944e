using Tidemark.Remote.Protocol;

namespace Tidemark.Remote;

/// <summary>
/// Every bound the remote server applies to what a client may send or hold, in one place. Each
/// default says why it is what it is; setters refuse values that would make the server unsafe.
/// The per-item maxima (strings, lists, typed parameters) are the protocol's own, stated by
/// remote_protocol.x and kept in <see cref="RemoteWire"/>: a client obeying libvirt never
/// exceeds them, and the decoder refuses anything over them before allocating.
/// </summary>
public sealed class RemoteServerLimits
{
    private int _maxMessageLength = RemoteWire.MaxMessageLength;
    private int _maxConcurrentCallsPerConnection = 20;
    private int _maxPendingRepliesPerConnection = 64;
    private int _maxConnections = 512;
    private int _maxEventCallbacksPerConnection = 256;
    private int _keepaliveCount = 5;

    /// <summary>
    /// Largest whole message (length word included). Default 32 MiB: libvirt's
    /// VIR_NET_MESSAGE_MAX, so anything libvirt sends fits. A larger length word closes the
    /// connection before any of the payload is read.
    /// </summary>
    public int MaxMessageLength
    {
        get => _maxMessageLength;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 64 * 1024, nameof(MaxMessageLength));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, RemoteWire.MaxMessageLength, nameof(MaxMessageLength));
            _maxMessageLength = value;
        }
    }

    /// <summary>
    /// Calls of one connection executed at once; past it the server stops reading that
    /// connection until one finishes, so the socket pushes back on the client. Default 20:
    /// libvirtd's <c>max_client_requests</c> is 5 and virsh and libvirt-python issue one call at
    /// a time; 20 leaves room for pipelining clients without letting one hog the backend.
    /// </summary>
    public int MaxConcurrentCallsPerConnection
    {
        get => _maxConcurrentCallsPerConnection;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxConcurrentCallsPerConnection));
            _maxConcurrentCallsPerConnection = value;
        }
    }

    /// <summary>
    /// Replies and events of one connection queued for sending. A call whose reply does not
    /// fit waits (holding its call slot, so reading stops); an event that does not fit closes
    /// the connection, since an event source must never wait on a client that does not read.
    /// Default 64: with 32 MiB messages the worst case is bounded, and a reading client never
    /// has more than a few replies queued.
    /// </summary>
    public int MaxPendingRepliesPerConnection
    {
        get => _maxPendingRepliesPerConnection;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxPendingRepliesPerConnection));
            _maxPendingRepliesPerConnection = value;
        }
    }

    /// <summary>
    /// Connections served at once; more are accepted and closed at once. Default 512: libvirtd's
    /// <c>max_clients</c> is 5000 for a daemon hosting many hypervisor users; Tidemark's clients are
    /// a CLI, backup tools and scripts, and 512 keeps file descriptors inside a 1024 ulimit.
    /// </summary>
    public int MaxConnections
    {
        get => _maxConnections;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxConnections));
            _maxConnections = value;
        }
    }

    /// <summary>
    /// Domain event callbacks one connection may register. Default 256: <c>virsh event --all</c>
    /// registers one per event ID (about 30); each costs a few bytes and a check per event.
    /// </summary>
    public int MaxEventCallbacksPerConnection
    {
        get => _maxEventCallbacksPerConnection;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxEventCallbacksPerConnection));
            _maxEventCallbacksPerConnection = value;
        }
    }

    /// <summary>
    /// Silence after which a client that asked for keepalive (feature PROGRAM_KEEPALIVE) is sent
    /// a PING; zero or less never pings (libvirtd's <c>keepalive_interval</c>, default 5 s,
    /// -1 to disable). Clients that never asked are never pinged, as with libvirtd: libvirt's
    /// client asks only when it has an event loop to answer with.
    /// </summary>
    public TimeSpan KeepaliveInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// PINGs left unanswered before the connection is closed: a client silent for
    /// <see cref="KeepaliveInterval"/> × (count + 1) is dropped, its calls cancelled (libvirtd's
    /// <c>keepalive_count</c>, default 5; 0 closes after one silent interval without a PING).
    /// </summary>
    public int KeepaliveCount
    {
        get => _keepaliveCount;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(KeepaliveCount));
            _keepaliveCount = value;
        }
    }
}
