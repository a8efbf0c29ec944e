using System.Diagnostics;
using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>nbd serve</c> and <c>nbd info</c> run as the native program,
/// checked against nbdinfo and qemu-nbd.
/// </summary>
public sealed class NbdCommandTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var run = await CliRun.RunAsync(args);
        return (run.ExitCode, run.Stdout, run.Stderr);
    }

    private static async Task<string> SparseImageAsync(TempDirectory dir)
    {
        var path = dir.File("disk.raw");
        await using (var f = File.Create(path))
        {
            f.SetLength(16 << 20);
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 3M 128k", path);
        return path;
    }

    /// <summary>qemu-nbd in the foreground on a unix socket, killed at the end.</summary>
    private sealed class QemuNbd : IAsyncDisposable
    {
        private readonly Process _process;

        private QemuNbd(Process process, string socket)
        {
            _process = process;
            Socket = socket;
        }

        public string Socket { get; }

        public static async Task<QemuNbd> StartAsync(TempDirectory dir, params string[] args)
        {
            var socket = dir.File("qemu.sock");
            var info = new ProcessStartInfo(Peer.Require("qemu-nbd")) { UseShellExecute = false, RedirectStandardError = true };
            foreach (var a in (string[])["-k", socket, .. args])
            {
                info.ArgumentList.Add(a);
            }

            var process = Process.Start(info)!;
            await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
            return new QemuNbd(process, socket);
        }

        public async ValueTask DisposeAsync()
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }


    [Fact]
    public async Task Info_Map_PrintsWhatNbdinfoPrints()
    {
        using var dir = new TempDirectory("cli-nbd-map");
        var image = await SparseImageAsync(dir);
        await using var qemu = await QemuNbd.StartAsync(dir, "-r", "-f", "raw", "-t", "-x", "vda", image);
        var uri = $"nbd+unix:///vda?socket={qemu.Socket}";

        var (code, output, error) = await RunAsync("nbd", "info", "--map", uri);
        Assert.Equal((0, string.Empty), (code, error));
        Assert.Equal(await Peer.RunCheckedAsync("nbdinfo", "--map", uri), output);

        (code, output, _) = await RunAsync("nbd", "info", "--map", "--json", uri);
        Assert.Equal(0, code);
        using var ours = JsonDocument.Parse(output);
        using var theirs = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--map", "--json", uri));
        Assert.Equal(JsonSerializer.Serialize(theirs.RootElement), JsonSerializer.Serialize(ours.RootElement));
    }

    [Fact]
    public async Task Info_JsonAndList_DescribeTheExport()
    {
        using var dir = new TempDirectory("cli-nbd-info");
        var image = await SparseImageAsync(dir);
        await using var qemu = await QemuNbd.StartAsync(dir, "-r", "-f", "raw", "-t", "-e", "2", "-x", "vda", "-D", "the disk", image);

        var (code, output, _) = await RunAsync("nbd", "info", "--json", $"nbd+unix:///vda?socket={qemu.Socket}");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        var export = doc.RootElement.GetProperty("exports")[0];
        Assert.Equal(16L << 20, export.GetProperty("export-size").GetInt64());
        Assert.True(export.GetProperty("is_read_only").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.Equal(["base:allocation"], export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));

        (code, output, _) = await RunAsync("nbd", "info", "--list", $"nbd+unix:///?socket={qemu.Socket}");
        Assert.Equal((0, "export=\"vda\" description=\"the disk\"\n"), (code, output));
    }

    [Fact]
    public async Task Serve_UntilInterrupted_NbdinfoSeesTheImage()
    {
        using var dir = new TempDirectory("cli-nbd-serve");
        var image = await SparseImageAsync(dir);
        var socket = dir.File("tidemark.sock");
        await using var serve = await CliProcess.StartAsync("nbd", "serve", "-r", "-t", "-e", "4", "-x", "vda", "-D", "served", "-k", socket, image);
        await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);

        var uri = $"nbd+unix:///vda?socket={socket}";
        using (var json = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", uri)))
        {
            var export = json.RootElement.GetProperty("exports")[0];
            Assert.Equal("served", export.GetProperty("description").GetString());
            Assert.True(export.GetProperty("is_read_only").GetBoolean());
            Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        }

        Assert.StartsWith("         0       65536    0  data\n     65536     3080192    3  hole,zero\n", await Peer.RunCheckedAsync("nbdinfo", "--map", uri), StringComparison.Ordinal);
        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", "-C", "4", uri, copy);
        Assert.Equal(await File.ReadAllBytesAsync(image, Token), await File.ReadAllBytesAsync(copy, Token));

        Assert.Equal(0, (await serve.StopAsync(CliProcess.SIGINT)).ExitCode);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Serve_Qcow2WithBitmaps_NbdinfoMapsEqualQemuNbds()
    {
        // libnbd interop/dirty-bitmap.sh style: the written and the dirty areas differ on purpose
        // (data before the bitmaps exist, a zero write that is dirty but not allocated, b1 at 128 KiB).
        using var dir = new TempDirectory("cli-nbd-qcow2");
        var qcow2 = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x12 5M 192k", qcow2);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", qcow2, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", qcow2, "b1");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 192k 64k", "-c", "write -P 0x33 1M 64k", "-c", "write -z 2M 128k", "-c", "discard 5M 64k", qcow2);
        await using var qemu = await QemuNbd.StartAsync(dir, "-r", "-f", "qcow2", "-t", "-e", "2", "-x", "vda", "-B", "b0", "-B", "b1", "-A", qcow2);

        var socket = dir.File("tidemark.sock");
        await using var serve = await CliProcess.StartAsync("nbd", "serve", "-r", "-t", "-e", "2", "-x", "vda", "-B", "b0", "-B", "b1", "-A", "-k", socket, qcow2);
        await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
        var ours = $"nbd+unix:///vda?socket={socket}";
        var theirs = $"nbd+unix:///vda?socket={qemu.Socket}";

        foreach (var map in new[] { "--map=qemu:dirty-bitmap:b0", "--map=qemu:dirty-bitmap:b1", "--map", "--map=qemu:allocation-depth" })
        {
            var expected = await Peer.RunCheckedAsync("nbdinfo", map, theirs);
            var actual = await Peer.RunCheckedAsync("nbdinfo", map, ours);
            Assert.True(expected == actual, $"nbdinfo {map}:\nqemu-nbd:\n{expected}tidemark:\n{actual}");
        }

        Assert.Contains("dirty", await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", ours), StringComparison.Ordinal);
        Assert.Equal("Images are identical.\n", await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", ours, theirs));
        Assert.Equal(0, (await serve.StopAsync()).ExitCode);
    }

    [Fact]
    public async Task Serve_MissingOrInconsistentBitmap_RefusedInQemuNbdsWords()
    {
        using var dir = new TempDirectory("cli-nbd-badbitmap");
        var qcow2 = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "4M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", qcow2, "b0");
        var (code, _, error) = await RunAsync("nbd", "serve", "-r", "-B", "nosuch", "-k", dir.File("x.sock"), qcow2);
        Assert.Equal((1, "error: Bitmap 'nosuch' is not found\n"), (code, error));

        // A crash while b0 records leaves it in use: inconsistent, never served as data.
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 1M 64k", "-c", "abort", qcow2]);
        (code, _, error) = await RunAsync("nbd", "serve", "-r", "-B", "b0", "-k", dir.File("y.sock"), qcow2);
        Assert.Equal((1, "error: Bitmap 'b0' is inconsistent and cannot be used\n"), (code, error));
    }

    [Fact]
    public async Task Serve_TlsCreds_NbdinfoNeedsTlsAndAClientCertificate()
    {
        using var dir = new TempDirectory("cli-nbd-tls");
        var image = await SparseImageAsync(dir);
        var server = Directory.CreateDirectory(dir.File("server")).FullName;
        var client = Directory.CreateDirectory(dir.File("client")).FullName;
        foreach (var (name, fields) in new[] { ("ca", "cn = ca\nca\ncert_signing_key\n"), ("server", "cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\n"), ("client", "cn = client\ntls_www_client\nencryption_key\nsigning_key\n") })
        {
            var template = dir.File($"{name}.info");
            await File.WriteAllTextAsync(template, fields + "expiration_days = 2\n", Token);
            await Peer.RunCheckedAsync("certtool", "--generate-privkey", "--bits", "2048", "--outfile", dir.File($"{name}-key.pem"));
            if (name == "ca")
            {
                await Peer.RunCheckedAsync("certtool", "--generate-self-signed", "--load-privkey", dir.File("ca-key.pem"), "--template", template, "--outfile", dir.File("ca-cert.pem"));
            }
            else
            {
                await Peer.RunCheckedAsync("certtool", "--generate-certificate", "--load-privkey", dir.File($"{name}-key.pem"), "--load-ca-certificate", dir.File("ca-cert.pem"), "--load-ca-privkey", dir.File("ca-key.pem"), "--template", template, "--outfile", dir.File($"{name}-cert.pem"));
            }
        }

        foreach (var (target, name) in new[] { (server, "ca-cert"), (server, "server-cert"), (server, "server-key"), (client, "ca-cert"), (client, "client-cert"), (client, "client-key") })
        {
            File.Copy(dir.File($"{name}.pem"), Path.Combine(target, $"{name}.pem"));
        }

        var port = LoopbackPort.Free();
        await using var serve = await CliProcess.StartAsync("nbd", "serve", "-r", "-t", "-x", "vda", "-b", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--tls-creds", server, image);
        await WaitForPortAsync(port);

        var info = await Peer.RunCheckedAsync("nbdinfo", $"nbds://localhost:{port}/vda?tls-certificates={client}");
        Assert.Contains("protocol: newstyle-fixed with TLS, using structured packets", info, StringComparison.Ordinal);
        var (code, output, _) = await RunAsync("nbd", "info", "--map", $"nbds://localhost:{port}/vda?tls-certificates={client}");
        Assert.Equal((0, await Peer.RunCheckedAsync("nbdinfo", "--map", $"nbds://localhost:{port}/vda?tls-certificates={client}")), (code, output));
        Assert.NotEqual(0, (await Peer.RunAsync("nbdinfo", [$"nbd://127.0.0.1:{port}/vda"])).ExitCode);
        (code, _, var error) = await RunAsync("nbd", "info", $"nbd://127.0.0.1:{port}/vda");
        Assert.Equal(1, code);
        Assert.Contains("not permitted before TLS", error, StringComparison.Ordinal);

        Assert.Equal(0, (await serve.StopAsync()).ExitCode);
    }

    private static async Task WaitForPortAsync(int port)
    {
        for (var i = 0; i < 600; i++)
        {
            using var client = new System.Net.Sockets.TcpClient();
            try
            {
                await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
                return;
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(50);
            }
        }

        throw new TimeoutException($"nothing listens on port {port}");
    }

    [Fact]
    public async Task Serve_WithoutPersistent_StopsAfterTheFirstClient()
    {
        using var dir = new TempDirectory("cli-nbd-once");
        var image = await SparseImageAsync(dir);
        var socket = dir.File("once.sock");
        await using var serve = await CliProcess.StartAsync("nbd", "serve", "-k", socket, image);
        await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);

        // WaitForSocketAsync's probe was the first client: the server has stopped.
        Assert.Equal(0, (await serve.WaitForExitAsync(TimeSpan.FromSeconds(30))).ExitCode);
    }

    [Theory]
    [InlineData(new[] { "nbd", "serve", "/nonexistent/disk.raw" }, "error: cannot open '/nonexistent/disk.raw': no such file")]
    [InlineData(new[] { "nbd", "serve", "-B", "b0", "IMAGE" }, "error: Bitmap 'b0' is not found: only qcow2 images have persistent bitmaps")]
    [InlineData(new[] { "nbd", "serve", "-f", "vmdk", "IMAGE" }, "error: --format: ")]
    [InlineData(new[] { "nbd", "serve", "-e", "0", "IMAGE" }, "error: --shared must be at least 1, not 0")]
    [InlineData(new[] { "nbd", "serve", "-b", "localhost", "IMAGE" }, "error: --bind: 'localhost' is not an IP address")]
    [InlineData(new[] { "nbd", "serve", "--tls-creds", "/nonexistent", "IMAGE" }, "error: TLS credentials: cannot load '/nonexistent/ca-cert.pem'")]
    [InlineData(new[] { "nbd", "info", "http://x/" }, "error: 'http://x/': unknown scheme 'http' (expected nbd, nbds, nbd+unix or nbds+unix)")]
    [InlineData(new[] { "nbd", "info", "nbds://localhost/" }, "error: a TLS URI needs tls-certificates=DIR (X.509); PSK is not supported")]
    public async Task BadInput_OneErrorLine(string[] args, string expected)
    {
        using var dir = new TempDirectory("cli-nbd-bad");
        var image = dir.File("disk.raw");
        await File.WriteAllBytesAsync(image, new byte[65536], Token);
        var (code, _, error) = await RunAsync(args.Select(a => a == "IMAGE" ? image : a).ToArray());
        Assert.NotEqual(0, code);
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }
}
