using Tidemark.Remote.Server;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests.Support;

/// <summary>A <see cref="RemoteServer"/> on a socket in a temp directory, serving a <see cref="ProtocolTestHypervisor"/>.</summary>
internal sealed class TestRemoteServer : IAsyncDisposable
{
    private readonly TempDirectory _dir;

    private TestRemoteServer(TempDirectory dir, RemoteServer server, ProtocolTestHypervisor hypervisor)
    {
        _dir = dir;
        Server = server;
        Hypervisor = hypervisor;
    }

    public RemoteServer Server { get; }

    public ProtocolTestHypervisor Hypervisor { get; }

    public string SocketPath => Server.Options.SocketPath;

    /// <summary>The URI virsh and libvirt-python are given.</summary>
    public string Uri => $"qemu+unix:///system?socket={SocketPath}";

    public static async Task<TestRemoteServer> StartAsync(RemoteServerLimits? limits = null)
    {
        var dir = new TempDirectory("remote");
        var hypervisor = new ProtocolTestHypervisor();
        var server = new RemoteServer(new RemoteServerOptions { SocketPath = dir.File("sock"), Limits = limits ?? new RemoteServerLimits() }, hypervisor);
        await server.StartAsync();
        return new TestRemoteServer(dir, server, hypervisor);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Hypervisor.DisposeAsync();
        _dir.Dispose();
    }
}
