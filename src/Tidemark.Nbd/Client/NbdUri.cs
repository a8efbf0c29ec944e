using System.Net;
using System.Net.Sockets;

namespace Tidemark.Nbd.Client;

/// <summary>
/// An NBD URI as libnbd spells them (formats.md §4.1): <c>nbd://host[:port]/EXPORT</c>,
/// <c>nbds://…</c> (TLS required), <c>nbd+unix:///EXPORT?socket=PATH</c>, <c>nbds+unix://…</c>,
/// with <c>tls-certificates=DIR</c> in the query. An empty path names the default export "".
/// </summary>
public sealed record NbdUri(EndPoint EndPoint, string ExportName, bool Tls, string? TlsCertificates, string HostName)
{
    /// <summary>
    /// The URI of export <paramref name="exportName"/> on the unix socket at
    /// <paramref name="socketPath"/>, as libnbd and qemu write it. They parse by RFC 3986 and
    /// refuse a space or any letter outside ASCII unescaped ("No valid URL specified"), and an
    /// '&amp;' or '#' would cut the query short, so both are percent-encoded, slashes kept.
    /// </summary>
    public static string ForUnixSocket(string socketPath, string exportName)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        ArgumentNullException.ThrowIfNull(exportName);
        return $"nbd+unix:///{Escape(exportName)}?socket={Escape(socketPath)}";
    }

    /// <summary>The URI of export <paramref name="exportName"/> at a TCP address: nbd://HOST:PORT/EXPORT, an IPv6 host in brackets.</summary>
    public static string ForTcp(IPEndPoint endPoint, string exportName)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        ArgumentNullException.ThrowIfNull(exportName);
        var host = endPoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]" : endPoint.Address.ToString();
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"nbd://{host}:{endPoint.Port}/{Escape(exportName)}");
    }

    private static string Escape(string text) => Uri.EscapeDataString(text).Replace("%2F", "/", StringComparison.Ordinal);

    /// <summary>Parses <paramref name="text"/>.</summary>
    /// <exception cref="NbdException">InvalidUri, naming the part that is wrong.</exception>
    public static NbdUri Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri))
        {
            throw new NbdException(NbdErrorReason.InvalidUri, $"'{text}' is not a URI");
        }

        var (tls, unix) = uri.Scheme switch
        {
            "nbd" => (false, false),
            "nbds" => (true, false),
            "nbd+unix" => (false, true),
            "nbds+unix" => (true, true),
            _ => throw new NbdException(NbdErrorReason.InvalidUri, $"'{text}': unknown scheme '{uri.Scheme}' (expected nbd, nbds, nbd+unix or nbds+unix)"),
        };

        var query = ParseQuery(uri.Query);
        var path = Uri.UnescapeDataString(uri.AbsolutePath);
        var export = path.StartsWith('/') ? path[1..] : path;
        query.TryGetValue("tls-certificates", out var certificates);
        if (unix)
        {
            if (!query.TryGetValue("socket", out var socket) || socket.Length == 0)
            {
                throw new NbdException(NbdErrorReason.InvalidUri, $"'{text}': a unix URI needs ?socket=PATH");
            }

            return new NbdUri(new UnixDomainSocketEndPoint(socket), export, tls, certificates, "localhost");
        }

        var host = uri.Host.Trim('[', ']');
        if (host.Length == 0)
        {
            throw new NbdException(NbdErrorReason.InvalidUri, $"'{text}': no host");
        }

        var port = uri.IsDefaultPort || uri.Port < 0 ? Protocol.NbdWire.DefaultPort : uri.Port;
        EndPoint endPoint = IPAddress.TryParse(host, out var address) ? new IPEndPoint(address, port) : new DnsEndPoint(host, port);
        return new NbdUri(endPoint, export, tls, certificates, host);
    }

    private static Dictionary<string, string> ParseQuery(string query)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(eq < 0 ? part : part[..eq]);
            var value = eq < 0 ? string.Empty : Uri.UnescapeDataString(part[(eq + 1)..]);
            result[key] = value;
        }

        return result;
    }
}
