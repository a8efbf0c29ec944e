using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Nbd;

/// <summary>
/// X.509 credentials read from a directory laid out as QEMU's <c>tls-creds-x509,dir=DIR</c> and
/// libnbd's <c>tls-certificates=DIR</c> expect (formats.md §4.9): <c>ca-cert.pem</c>, and
/// <c>server-cert.pem</c> + <c>server-key.pem</c> for a server or <c>client-cert.pem</c> +
/// <c>client-key.pem</c> for a client.
/// </summary>
public sealed class NbdTlsCredentials : IDisposable
{
    public const string CaCertificateFile = "ca-cert.pem";
    public const string ServerCertificateFile = "server-cert.pem";
    public const string ServerKeyFile = "server-key.pem";
    public const string ClientCertificateFile = "client-cert.pem";
    public const string ClientKeyFile = "client-key.pem";

    private NbdTlsCredentials(string directory, X509Certificate2 ca, X509Certificate2? certificate)
    {
        Directory = directory;
        CertificateAuthority = ca;
        Certificate = certificate;
    }

    /// <summary>The directory the files came from.</summary>
    public string Directory { get; }

    /// <summary>The CA that peer certificates must chain to.</summary>
    public X509Certificate2 CertificateAuthority { get; }

    /// <summary>This side's certificate with its private key; a client may have none.</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>
    /// Server side: require and verify a client certificate signed by the CA. On by default, as
    /// QEMU's <c>verify-peer=on</c> default (formats.md §4.9).
    /// </summary>
    public bool VerifyPeer { get; init; } = true;

    /// <summary>Loads server credentials (all three files are required).</summary>
    /// <exception cref="NbdException">A file is missing or unreadable (BadCredentials), naming it.</exception>
    public static NbdTlsCredentials LoadServer(string directory, bool verifyPeer = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var ca = LoadCertificate(directory, CaCertificateFile);
        var cert = LoadCertificateWithKey(directory, ServerCertificateFile, ServerKeyFile);
        return new NbdTlsCredentials(directory, ca, cert) { VerifyPeer = verifyPeer };
    }

    /// <summary>Loads client credentials: the CA is required, the client certificate is used when present.</summary>
    /// <exception cref="NbdException">The CA or a half of the client pair is missing or unreadable (BadCredentials).</exception>
    public static NbdTlsCredentials LoadClient(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var ca = LoadCertificate(directory, CaCertificateFile);
        X509Certificate2? cert = null;
        if (File.Exists(Path.Combine(directory, ClientCertificateFile)))
        {
            cert = LoadCertificateWithKey(directory, ClientCertificateFile, ClientKeyFile);
        }

        return new NbdTlsCredentials(directory, ca, cert);
    }

    /// <summary>
    /// Checks a peer's certificate chain against <see cref="CertificateAuthority"/> only (the
    /// system store is not consulted), and, when <paramref name="hostName"/> is given, that the
    /// certificate names the host the client dialled.
    /// </summary>
    internal bool Validate(X509Certificate? certificate, SslPolicyErrors errors, string? hostName, bool required)
    {
        if (certificate is null)
        {
            return !required;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(CertificateAuthority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var peer = new X509Certificate2(certificate);
        if (!chain.Build(peer))
        {
            return false;
        }

        if (hostName is not null && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }

        return true;
    }

    public void Dispose()
    {
        CertificateAuthority.Dispose();
        Certificate?.Dispose();
    }

    private static X509Certificate2 LoadCertificate(string directory, string file)
    {
        var path = Path.Combine(directory, file);
        try
        {
            return X509Certificate2.CreateFromPem(File.ReadAllText(path));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new NbdException(NbdErrorReason.BadCredentials, $"TLS credentials: cannot load '{path}': {e.Message}", e);
        }
    }

    private static X509Certificate2 LoadCertificateWithKey(string directory, string certFile, string keyFile)
    {
        var certPath = Path.Combine(directory, certFile);
        var keyPath = Path.Combine(directory, keyFile);
        try
        {
            using var ephemeral = X509Certificate2.CreateFromPemFile(certPath, keyPath);

            // SslStream needs the key in a form the platform TLS stack can use: round-trip
            // through PKCS#12 so the key is not an ephemeral handle.
            return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new NbdException(NbdErrorReason.BadCredentials, $"TLS credentials: cannot load '{certPath}' with key '{keyPath}': {e.Message}", e);
        }
    }
}
