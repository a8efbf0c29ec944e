namespace Tidemark.Testing;

/// <summary>
/// A throw-away CA with a server and a client certificate, made with certtool (gnutls-bin), laid
/// out as QEMU's tls-creds-x509 and libnbd's tls-certificates expect (formats.md §4.9).
/// </summary>
public sealed class X509Credentials
{
    private X509Credentials(string serverDirectory, string clientDirectory, string caOnlyDirectory, string rogueClientDirectory)
    {
        ServerDirectory = serverDirectory;
        ClientDirectory = clientDirectory;
        CaOnlyDirectory = caOnlyDirectory;
        RogueClientDirectory = rogueClientDirectory;
    }

    /// <summary>ca-cert.pem, server-cert.pem, server-key.pem (SAN DNS:localhost, IP:127.0.0.1).</summary>
    public string ServerDirectory { get; }

    /// <summary>ca-cert.pem, client-cert.pem, client-key.pem.</summary>
    public string ClientDirectory { get; }

    /// <summary>ca-cert.pem only: a client without a certificate.</summary>
    public string CaOnlyDirectory { get; }

    /// <summary>The real CA, but a client certificate signed by another CA.</summary>
    public string RogueClientDirectory { get; }

    public static async Task<X509Credentials> CreateAsync(TempDirectory dir)
    {
        var work = Directory.CreateDirectory(dir.File("pki")).FullName;
        var server = Directory.CreateDirectory(dir.File("server")).FullName;
        var client = Directory.CreateDirectory(dir.File("client")).FullName;
        var caOnly = Directory.CreateDirectory(dir.File("ca-only")).FullName;
        var rogue = Directory.CreateDirectory(dir.File("rogue")).FullName;

        await MakeCaAsync(work, "ca");
        await MakeCaAsync(work, "other-ca");
        await MakeCertificateAsync(work, "ca", "server", "cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\n");
        await MakeCertificateAsync(work, "ca", "client", "cn = tidemark test client\ntls_www_client\n");
        await MakeCertificateAsync(work, "other-ca", "rogue", "cn = rogue client\ntls_www_client\n");

        File.Copy(Path.Combine(work, "ca-cert.pem"), Path.Combine(server, "ca-cert.pem"));
        File.Copy(Path.Combine(work, "server-cert.pem"), Path.Combine(server, "server-cert.pem"));
        File.Copy(Path.Combine(work, "server-key.pem"), Path.Combine(server, "server-key.pem"));
        File.Copy(Path.Combine(work, "ca-cert.pem"), Path.Combine(client, "ca-cert.pem"));
        File.Copy(Path.Combine(work, "client-cert.pem"), Path.Combine(client, "client-cert.pem"));
        File.Copy(Path.Combine(work, "client-key.pem"), Path.Combine(client, "client-key.pem"));
        File.Copy(Path.Combine(work, "ca-cert.pem"), Path.Combine(caOnly, "ca-cert.pem"));
        File.Copy(Path.Combine(work, "ca-cert.pem"), Path.Combine(rogue, "ca-cert.pem"));
        File.Copy(Path.Combine(work, "rogue-cert.pem"), Path.Combine(rogue, "client-cert.pem"));
        File.Copy(Path.Combine(work, "rogue-key.pem"), Path.Combine(rogue, "client-key.pem"));
        return new X509Credentials(server, client, caOnly, rogue);
    }

    private static async Task MakeCaAsync(string work, string name)
    {
        var key = Path.Combine(work, $"{name}-key.pem");
        var template = Path.Combine(work, $"{name}.info");
        await File.WriteAllTextAsync(template, $"cn = {name}\nca\ncert_signing_key\nexpiration_days = 2\n");
        await Peer.RunCheckedAsync("certtool", "--generate-privkey", "--bits", "2048", "--outfile", key);
        await Peer.RunCheckedAsync("certtool", "--generate-self-signed", "--load-privkey", key, "--template", template, "--outfile", Path.Combine(work, $"{name}-cert.pem"));
    }

    private static async Task MakeCertificateAsync(string work, string ca, string name, string fields)
    {
        var key = Path.Combine(work, $"{name}-key.pem");
        var template = Path.Combine(work, $"{name}.info");
        await File.WriteAllTextAsync(template, $"organization = Tidemark\n{fields}encryption_key\nsigning_key\nexpiration_days = 2\n");
        await Peer.RunCheckedAsync("certtool", "--generate-privkey", "--bits", "2048", "--outfile", key);
        await Peer.RunCheckedAsync(
            "certtool", "--generate-certificate", "--load-privkey", key,
            "--load-ca-certificate", Path.Combine(work, $"{ca}-cert.pem"), "--load-ca-privkey", Path.Combine(work, $"{ca}-key.pem"),
            "--template", template, "--outfile", Path.Combine(work, $"{name}-cert.pem"));
    }
}
