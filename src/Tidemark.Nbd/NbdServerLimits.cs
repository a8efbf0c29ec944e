namespace Tidemark.Nbd;

/// <summary>
/// Every bound the server applies to what a client may send or hold. Each default says why it
/// is what it is; setters refuse values that would make the server unsafe.
/// </summary>
public sealed class NbdServerLimits
{
    private int _maxPayloadLength = 32 * 1024 * 1024;
    private int _maxOptionLength = 64 * 1024;
    private int _maxOptions = 64;
    private int _maxMetaContextQueries = 128;
    private int _maxConnections = 256;
    private int _maxQueuedConnections = 128;
    private int _maxInFlightRequestsPerConnection = 64;
    private int _maxExtentsPerReply = 128 * 1024;
    private TimeSpan _handshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Largest READ or WRITE payload, advertised as the maximum block size. Default 32 MiB: what
    /// qemu-nbd 7.2 advertises and the most portable clients send (formats.md §4.7). It bounds the
    /// memory one request can pin; TRIM, WRITE_ZEROES and BLOCK_STATUS carry no payload and may be larger.
    /// </summary>
    public int MaxPayloadLength
    {
        get => _maxPayloadLength;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 64 * 1024, nameof(MaxPayloadLength));
            _maxPayloadLength = value;
        }
    }

    /// <summary>
    /// Largest option payload in the handshake. Default 64 KiB: the biggest legitimate option is a
    /// meta-context request (an export name and queries of at most 4 KiB each, formats.md §4.1);
    /// nbdkit uses the same order of magnitude. A larger option is refused and skipped.
    /// </summary>
    public int MaxOptionLength
    {
        get => _maxOptionLength;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 2 * 4096 + 16, nameof(MaxOptionLength));
            _maxOptionLength = value;
        }
    }

    /// <summary>
    /// Options one connection may send before it must choose an export. Default 64: nbdkit allows
    /// 32 (MAX_NR_OPTIONS); libnbd's nbdinfo --list --json sends one INFO and a few meta-context
    /// options per export, so a listing of many exports needs more. Past it the connection is closed.
    /// </summary>
    public int MaxOptions
    {
        get => _maxOptions;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 4, nameof(MaxOptions));
            _maxOptions = value;
        }
    }

    /// <summary>Queries in one LIST/SET_META_CONTEXT. Default 128: a context per bitmap, and QEMU keeps far fewer bitmaps.</summary>
    public int MaxMetaContextQueries
    {
        get => _maxMetaContextQueries;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxMetaContextQueries));
            _maxMetaContextQueries = value;
        }
    }

    /// <summary>
    /// Connections served at once (qemu-nbd's <c>-e</c>); a connection in its handshake holds a
    /// slot too, for at most <see cref="HandshakeTimeout"/>. More are accepted and wait, without a
    /// greeting, in a queue of <see cref="MaxQueuedConnections"/> until a slot frees, as qemu-nbd
    /// 7.2 leaves them waiting. Default 256: a guest uses one per disk, nbdcopy up to 4 (or
    /// -C N), and 256 keeps file descriptors well inside a default ulimit of 1024.
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
    /// Connections that wait for a slot (see <see cref="MaxConnections"/>); one more is closed at
    /// once. Default 128: the listen backlog the server asks of the kernel, so the queue holds
    /// what the kernel would. A waiting connection costs a socket and nothing else, and one whose
    /// client has gone is dropped when its turn comes instead of taking the slot.
    /// </summary>
    public int MaxQueuedConnections
    {
        get => _maxQueuedConnections;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 0, nameof(MaxQueuedConnections));
            _maxQueuedConnections = value;
        }
    }

    /// <summary>
    /// Requests one connection executes at once; the server stops reading requests past it.
    /// Default 64: nbdcopy keeps 64 requests in flight per connection (-R), QEMU's client 16.
    /// With 32 MiB payloads this bounds one connection's buffers to 2 GiB in the worst case,
    /// a few MiB in practice (nbdcopy asks 256 KiB at a time).
    /// </summary>
    public int MaxInFlightRequestsPerConnection
    {
        get => _maxInFlightRequestsPerConnection;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxInFlightRequestsPerConnection));
            _maxInFlightRequestsPerConnection = value;
        }
    }

    /// <summary>
    /// Extents in one BLOCK_STATUS chunk. Default 131072: what qemu-nbd 7.2 sends at most
    /// (formats.md §4.7); the protocol allows 2^20, and clients ask again for the rest.
    /// </summary>
    public int MaxExtentsPerReply
    {
        get => _maxExtentsPerReply;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxExtentsPerReply));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 1 << 20, nameof(MaxExtentsPerReply));
            _maxExtentsPerReply = value;
        }
    }

    /// <summary>
    /// Time a client has from its greeting to the end of option haggling (TLS included), after
    /// which the connection is closed and its slot freed: a client that connects and says
    /// nothing, or stops halfway, must not hold one of the <see cref="MaxConnections"/> slots.
    /// Default 10 s: qemu-nbd's <c>NBD_DEFAULT_HANDSHAKE_MAX_SECS</c> (Debian's qemu-nbd 7.2
    /// closes a silent client after 10 s and then serves the one waiting behind it).
    /// </summary>
    public TimeSpan HandshakeTimeout
    {
        get => _handshakeTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero, nameof(HandshakeTimeout));
            _handshakeTimeout = value;
        }
    }
}
