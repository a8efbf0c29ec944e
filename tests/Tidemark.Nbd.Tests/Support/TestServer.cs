using System.Net;
using System.Net.Sockets;
using Tidemark.Nbd.Server;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>A Tidemark NBD server on a unix socket (and optionally TCP on 127.0.0.1) for one test.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private TestServer(NbdServer server, string socketPath, LogRecorder log)
    {
        Server = server;
        SocketPath = socketPath;
        Log = log;
    }

    public NbdServer Server { get; }

    public string SocketPath { get; }

    /// <summary>What the server logged.</summary>
    public LogRecorder Log { get; }

    public int TcpPort => Server.EndPoints.OfType<IPEndPoint>().Single().Port;

    public string UnixUri(string export = "") => $"nbd+unix:///{export}?socket={SocketPath}";

    public string TcpUri(string export = "") => $"nbd://127.0.0.1:{TcpPort}/{export}";

    public static async Task<TestServer> StartAsync(TempDirectory dir, IEnumerable<NbdExport> exports, bool tcp = false, NbdTlsCredentials? tls = null, NbdServerLimits? limits = null)
    {
        var socket = dir.File($"tidemark-{Guid.NewGuid():N}.sock");
        var options = new NbdServerOptions { Tls = tls, Limits = limits ?? new NbdServerLimits() };
        options.EndPoints.Add(new UnixDomainSocketEndPoint(socket));
        if (tcp)
        {
            options.EndPoints.Add(new IPEndPoint(IPAddress.Loopback, 0));
        }

        var log = new LogRecorder();
        var server = new NbdServer(options, exports, log);
        await server.StartAsync();
        return new TestServer(server, socket, log);
    }

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}
