namespace Tidemark.Remote.Client;

/// <summary>
/// A libvirt connection URI reduced to what a unix-socket client needs: the socket to connect
/// to and the name to send in CONNECT_OPEN. Accepted: <c>DRIVER[+unix]:///PATH[?socket=S]</c>,
/// e.g. <c>qemu+unix:///system?socket=/run/tidemark/sock</c> or <c>qemu:///system</c>.
/// The name sent is <c>DRIVER:///PATH</c> — the transport and the socket are the client's
/// business, which is what virsh sends too.
/// </summary>
public sealed record LibvirtUri(string Driver, string Path, string SocketPath)
{
    /// <summary>libvirtd's system socket (LOCALSTATEDIR/run/libvirt/libvirt-sock).</summary>
    public const string SystemSocket = "/var/run/libvirt/libvirt-sock";

    /// <summary>The transports libvirt's remote driver knows, in the order its error lists them.</summary>
    private static readonly string[] KnownTransports = ["tls", "unix", "ssh", "ext", "tcp", "libssh2", "libssh"];

    /// <summary>What CONNECT_OPEN carries, e.g. "qemu:///system".</summary>
    public string Name => $"{Driver}://{Path}";

    /// <summary>
    /// Parses <paramref name="uri"/>. Without <c>socket=</c>, <paramref name="defaultSocket"/> is
    /// used if given, else libvirt's own default: the system socket for <c>/system</c>,
    /// <c>$XDG_RUNTIME_DIR/libvirt/libvirt-sock</c> for <c>/session</c>.
    /// </summary>
    /// <exception cref="RemoteProtocolException">The URI is malformed, names a host, or a transport other than unix.</exception>
    public static LibvirtUri Parse(string uri, string? defaultSocket = null)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var schemeEnd = uri.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0)
        {
            throw Invalid(uri, "no scheme");
        }

        var scheme = uri[..schemeEnd];
        var rest = uri[(schemeEnd + 3)..];
        var plus = scheme.IndexOf('+', StringComparison.Ordinal);
        var driver = plus < 0 ? scheme : scheme[..plus];
        var transport = plus < 0 ? null : scheme[(plus + 1)..];
        if (transport is not null && !KnownTransports.Contains(transport))
        {
            // libvirt's remote driver refuses it before it connects, in these words (virsh -c
            // qemu+bogus:///system). An unknown driver (bogus:///) is different: the client
            // cannot tell it from a driver of the host's, so it connects to the default socket
            // as virsh does, and the daemon there refuses it ("no connection driver available").
            throw new RemoteProtocolException(RemoteProtocolErrorReason.InvalidUri, $"invalid argument: remote_open: transport in URL not recognised (should be {string.Join('|', KnownTransports)})");
        }

        if (transport is not null && transport != "unix")
        {
            throw Invalid(uri, $"transport '{transport}' is not supported, only unix sockets are");
        }

        var query = "";
        var q = rest.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            query = rest[(q + 1)..];
            rest = rest[..q];
        }

        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var host = slash < 0 ? rest : rest[..slash];
        if (host.Length != 0)
        {
            throw Invalid(uri, $"host '{host}' given; only local unix sockets are supported");
        }

        var path = slash < 0 ? "/" : rest[slash..];
        string? socket = null;
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? pair : pair[..eq];
            if (key == "socket")
            {
                socket = Uri.UnescapeDataString(eq < 0 ? "" : pair[(eq + 1)..]);
            }
        }

        if (socket is { Length: 0 })
        {
            throw Invalid(uri, "empty socket parameter");
        }

        socket ??= defaultSocket ?? DefaultSocket(path);
        return new LibvirtUri(driver, path, socket);
    }

    private static string DefaultSocket(string path) =>
        path == "/session" && Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } runtime
            ? System.IO.Path.Combine(runtime, "libvirt", "libvirt-sock")
            : SystemSocket;

    private static RemoteProtocolException Invalid(string uri, string why) =>
        new(RemoteProtocolErrorReason.InvalidUri, $"invalid connection URI '{uri}': {why}");
}
