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
        if (Tidemark.Storage.ProcessIdentity.UserId != 0)
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

    /// <summary>
    /// A read-only connection (VIR_CONNECT_RO) is refused what changes anything, as libvirtd
    /// refuses it (virCheckReadOnlyGoto), also to a client that skips libvirt's own check by
    /// speaking the protocol itself; reads are served.
    /// </summary>
    [Fact]
    public async Task ReadOnlyConnection_IsRefusedChanges_AndServedReads()
    {
        await using var server = await TestRemoteServer.StartAsync();
        var vm = server.Hypervisor.AddDomain("vm1", running: true);
        vm.Checkpoints.Add(new("c1", null, 1));
        await using var c = await RawRemoteConnection.ConnectAsync(server.SocketPath);
        await c.OpenAsync(flags: 1);
        var checkpoint = new Tidemark.Remote.Protocol.RemoteCheckpoint("c1", vm.Ref);

        async Task<Tidemark.Remote.Protocol.RemoteErrorRecord> RefusedAsync(Tidemark.Remote.Protocol.RemoteProcedure procedure, Action<Tidemark.Remote.Xdr.XdrWriter> args)
        {
            await c.CallAsync(procedure, args);
            return RawRemoteConnection.ErrorOf((await c.ReadAsync())!);
        }

        var delete = await RefusedAsync(Tidemark.Remote.Protocol.RemoteProcedure.DomainCheckpointDelete, w => { checkpoint.Write(w); w.WriteUInt32(0); });
        Assert.Equal((int)VirErrorNumber.OperationDenied, delete.Code);
        Assert.Equal((int)VirErrorDomain.DomainCheckpoint, delete.Domain);
        Assert.Equal("operation forbidden: read only access prevents virDomainCheckpointDelete", delete.Message);
        var destroy = await RefusedAsync(Tidemark.Remote.Protocol.RemoteProcedure.DomainDestroy, vm.Ref.Write);
        Assert.Equal("operation forbidden: read only access prevents virDomainDestroy", destroy.Message);
        var secure = await RefusedAsync(Tidemark.Remote.Protocol.RemoteProcedure.DomainCheckpointGetXmlDesc, w => { checkpoint.Write(w); w.WriteUInt32(1); });
        Assert.Equal("operation forbidden: virDomainCheckpointGetXMLDesc with secure flag", secure.Message);
        var domainSecure = await RefusedAsync(Tidemark.Remote.Protocol.RemoteProcedure.DomainGetXmlDesc, w => { vm.Ref.Write(w); w.WriteUInt32(1); });
        Assert.Equal("operation forbidden: virDomainGetXMLDesc with secure flag", domainSecure.Message);
        Assert.DoesNotContain(server.Hypervisor.Calls, call => call.StartsWith("DeleteCheckpoint", StringComparison.Ordinal) || call.StartsWith("Destroy", StringComparison.Ordinal));
        Assert.Single(vm.Checkpoints);

        // Reads go on: the checkpoint's XML without secrets, through stock libvirt-python's
        // openReadOnly as well.
        await c.CallAsync(Tidemark.Remote.Protocol.RemoteProcedure.DomainCheckpointGetXmlDesc, w => { checkpoint.Write(w); w.WriteUInt32(0); });
        Assert.Equal(Tidemark.Remote.Protocol.RemoteMessageStatus.Ok, (await c.ReadAsync())!.Header.Status);
        var python = await Peer.RunAsync("/usr/bin/python3", ["-c", $"import libvirt; c = libvirt.openReadOnly('{server.Uri}'); d = c.lookupByName('vm1'); print([x.getName() for x in d.listAllCheckpoints()])"]);
        Assert.True(python.ExitCode == 0, python.Stderr);
        Assert.Equal("['c1']\n", python.Stdout);
    }
}
