using Tidemark.Remote.Server;
using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>Who may talk to the server: the socket's mode, then the peer's uid from SO_PEERCRED.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class AccessTests
{
    /// <summary>An AUTH_LIST call over a raw socket; prints "served" for a reply, "closed" when the server hangs up.</summary>
    private const string Probe = """
        import socket, struct, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        try:
            s.sendall(struct.pack('>7I', 28, 0x20008086, 1, 66, 0, 0, 0))
            print('served' if s.recv(4) else 'closed')
        except (ConnectionResetError, BrokenPipeError):
            print('closed')
        """;

    [Fact]
    public async Task Socket_IsCreatedOwnerOnly()
    {
        await using var server = await TestRemoteServer.StartAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(server.SocketPath));
    }

    [Fact]
    public async Task OtherUid_IsRefusedUnlessAllowed()
    {
        if (PeerCredentials.CurrentUserId != 0)
        {
            Assert.Skip("needs root to run a client as another uid");
        }

        using var dir = new TempDirectory("remote-access");
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        var hypervisor = new ProtocolTestHypervisor();
        var everyone = (UnixFileMode)0b110_110_110;
        foreach (var (allow, expected) in new[] { (false, "closed\n"), (true, "served\n") })
        {
            var path = dir.File($"sock-{allow}");
            await using var server = new RemoteServer(new RemoteServerOptions { SocketPath = path, SocketMode = everyone, AllowOtherUsers = allow }, hypervisor);
            await server.StartAsync(TestContext.Current.CancellationToken);
            var asNobody = await Peer.RunAsync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", Probe, path]);
            Assert.True(asNobody.ExitCode == 0, asNobody.Stderr);
            Assert.Equal(expected, asNobody.Stdout);
            var asRoot = await Peer.RunAsync("/usr/bin/python3", ["-c", Probe, path]);
            Assert.Equal("served\n", asRoot.Stdout);
        }
    }
}
