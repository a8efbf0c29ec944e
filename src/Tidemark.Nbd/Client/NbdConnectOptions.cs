using System.Net;

namespace Tidemark.Nbd.Client;

/// <summary>What <see cref="NbdClient.ConnectAsync"/> connects to and asks for.</summary>
public sealed class NbdConnectOptions
{
    /// <summary>A TCP endpoint (IP or DNS) or a unix socket.</summary>
    public required EndPoint EndPoint { get; init; }

    /// <summary>The export to open ("" is the default export).</summary>
    public string ExportName { get; init; } = string.Empty;

    /// <summary>X.509 credentials; when set the client does STARTTLS and refuses to go on without TLS.</summary>
    public NbdTlsCredentials? Tls { get; init; }

    /// <summary>The name the server certificate must carry (the host dialled; "localhost" for unix sockets).</summary>
    public string TlsHostName { get; init; } = "localhost";

    /// <summary>Ask for structured replies (needed for sparse reads and block status).</summary>
    public bool StructuredReplies { get; init; } = true;

    /// <summary>Meta contexts to select (exact names, e.g. <c>base:allocation</c>, <c>qemu:dirty-bitmap:b0</c>).</summary>
    public IReadOnlyList<string> MetaContexts { get; init; } = [];

    /// <summary>Builds options from an <see cref="NbdUri"/>, loading its <c>tls-certificates</c> directory.</summary>
    /// <exception cref="NbdException">The URI asks for TLS without certificates, or they cannot be read.</exception>
    public static NbdConnectOptions FromUri(NbdUri uri, IReadOnlyList<string>? metaContexts = null, string? tlsCertificates = null)
    {
        ArgumentNullException.ThrowIfNull(uri);
        NbdTlsCredentials? tls = null;
        var directory = tlsCertificates ?? uri.TlsCertificates;
        if (uri.Tls)
        {
            if (directory is null)
            {
                throw new NbdException(NbdErrorReason.BadCredentials, "a TLS URI needs tls-certificates=DIR (X.509); PSK is not supported");
            }

            tls = NbdTlsCredentials.LoadClient(directory);
        }

        return new NbdConnectOptions
        {
            EndPoint = uri.EndPoint,
            ExportName = uri.ExportName,
            Tls = tls,
            TlsHostName = uri.HostName,
            MetaContexts = metaContexts ?? [],
        };
    }
}
