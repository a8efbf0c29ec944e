using System.Text;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// TLS with x509 credentials made by certtool: nbdinfo and qemu-img reach Tidemark's server
/// through TLS, plain clients and clients without a valid certificate are refused, and
/// Tidemark's client talks TLS to qemu-nbd.
/// </summary>
public sealed class TlsTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("nbd-tls");
    private X509Credentials _pki = null!;
    private string _imagePath = null!;
    private RawImage _image = null!;
    private NbdTlsCredentials _serverCredentials = null!;
    private TestServer _server = null!;

    public async ValueTask InitializeAsync()
    {
        _pki = await X509Credentials.CreateAsync(_dir);
        _imagePath = await Images.SparseRawAsync(_dir);
        _image = RawImage.Open(_imagePath, readOnly: true);
        _serverCredentials = NbdTlsCredentials.LoadServer(_pki.ServerDirectory);
        _server = await TestServer.StartAsync(_dir, [new NbdExport("vda", _image)], tcp: true, tls: _serverCredentials);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _image.DisposeAsync();
        _serverCredentials.Dispose();
        _dir.Dispose();
    }

    private string TlsUri(string certificates) => $"nbds://localhost:{_server.TcpPort}/vda?tls-certificates={certificates}";

    [Fact]
    public async Task Nbdinfo_OverTls_SeesTheExportAndItsMap()
    {
        var info = await Peer.RunCheckedAsync("nbdinfo", TlsUri(_pki.ClientDirectory));
        Assert.Contains("protocol: newstyle-fixed with TLS, using structured packets", info, StringComparison.Ordinal);
        var map = await Peer.RunCheckedAsync("nbdinfo", "--map", TlsUri(_pki.ClientDirectory));
        Assert.StartsWith("         0       65536    0  data\n", map, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QemuImg_OverTls_ConvertsTheSameBytes()
    {
        var copy = _dir.File("copy.raw");
        var opts = $"driver=nbd,server.type=inet,server.host=localhost,server.port={_server.TcpPort},export=vda,tls-creds=tls0";
        var tlsObject = $"tls-creds-x509,id=tls0,endpoint=client,dir={_pki.ClientDirectory}";
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--object", tlsObject, "--image-opts", opts);
        Assert.Contains("virtual size: 64 MiB", info, StringComparison.Ordinal);
        await Peer.RunCheckedAsync("qemu-img", "convert", "--object", tlsObject, "--image-opts", opts, "-O", "raw", copy);
        Assert.Equal("Images are identical.\n", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", _imagePath, copy));
    }

    [Fact]
    public async Task Nbdinfo_WithoutTls_IsRefused()
    {
        var result = await Peer.RunAsync("nbdinfo", [$"nbd://127.0.0.1:{_server.TcpPort}/vda"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("server replied with", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("refused: TLS is required", string.Join('\n', _server.Log.Lines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ca-only")]
    [InlineData("rogue")]
    public async Task Nbdinfo_WithoutAValidClientCertificate_IsRefused(string which)
    {
        var certificates = which == "rogue" ? _pki.RogueClientDirectory : _pki.CaOnlyDirectory;
        var result = await Peer.RunAsync("nbdinfo", [TlsUri(certificates)]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.True(await _server.Log.WaitForAsync("TLS handshake failed"));
    }

    [Fact]
    public async Task RawOptionsBeforeStartTls_ErrTlsRequiredOrDisconnect()
    {
        await using (var c = await RawNbdConnection.ConnectAsync(_server.SocketPath))
        {
            await c.GreetAsync(3);
            foreach (var option in new[] { NbdOption.StructuredReply, NbdOption.List, NbdOption.Go })
            {
                await c.SendOptionAsync(option, option == NbdOption.Go ? RawNbdConnection.InfoPayload("vda") : null);
                var (echoed, type, data) = await c.ReadOptionReplyAsync();
                Assert.Equal((option, NbdOptionReplyType.ErrTlsRequired), (echoed, type));
                Assert.Equal($"Option 0x{(uint)option:x} not permitted before TLS", Encoding.UTF8.GetString(data));
            }

            await c.SendOptionAsync(NbdOption.Abort);
            Assert.Equal(NbdOptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        }

        await using (var c = await RawNbdConnection.ConnectAsync(_server.SocketPath))
        {
            await c.GreetAsync(3);
            await c.SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes("vda"));
            Assert.True(await c.IsClosedByServerAsync());
        }
    }

    [Fact]
    public async Task Client_OverTls_ReadsFromTidemarkAndQemuNbd()
    {
        using var credentials = NbdTlsCredentials.LoadClient(_pki.ClientDirectory);
        await using var qemu = await PeerServer.QemuNbdTcpAsync(
            "--object", $"tls-creds-x509,id=tls0,endpoint=server,dir={_pki.ServerDirectory}", "--tls-creds", "tls0",
            "-r", "-f", "raw", "-t", "-x", "vda", _imagePath);
        var expected = new byte[128 << 10];
        await using (var f = File.OpenRead(_imagePath))
        {
            f.Position = 3 << 20;
            await f.ReadExactlyAsync(expected, TestContext.Current.CancellationToken);
        }

        foreach (var port in new[] { _server.TcpPort, qemu.Port })
        {
            var uri = NbdUri.Parse($"nbds://localhost:{port}/vda?tls-certificates={_pki.ClientDirectory}");
            await using var client = await NbdClient.ConnectAsync(NbdConnectOptions.FromUri(uri, ["base:allocation"]), TestContext.Current.CancellationToken);
            Assert.True(client.IsTls);
            var buffer = new byte[expected.Length];
            await client.ReadAsync(3 << 20, buffer, cancellationToken: TestContext.Current.CancellationToken);
            Assert.Equal(expected, buffer);
            var status = await client.BlockStatusAsync(0, 1 << 20, cancellationToken: TestContext.Current.CancellationToken);
            Assert.Equal(new NbdBlockExtent(65536, 0), status["base:allocation"][0]);
        }
    }

    [Fact]
    public async Task Client_WithoutTls_GetsTlsRequired()
    {
        var options = new NbdConnectOptions { EndPoint = new System.Net.Sockets.UnixDomainSocketEndPoint(_server.SocketPath), ExportName = "vda" };
        var e = await Assert.ThrowsAsync<NbdException>(async () => await NbdClient.ConnectAsync(options, TestContext.Current.CancellationToken));
        Assert.Equal(NbdErrorReason.TlsRequired, e.Reason);
        Assert.Contains("not permitted before TLS", e.Message, StringComparison.Ordinal);
    }
}
