using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>libvirt-python 9.0 (<c>import libvirt</c> under /usr/bin/python3) as a client of the server.</summary>
public sealed class PythonTests
{
    private const string Script = """
        import sys, libvirt
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        conn = libvirt.open(sys.argv[1])
        print(conn.getLibVersion())
        dom = conn.lookupByName('vm1')
        print(dom.name(), dom.UUIDString(), dom.ID(), dom.isActive())
        print(' '.join(c.getName() for c in dom.listAllCheckpoints()))
        try:
            conn.lookupByName('nosuch')
        except libvirt.libvirtError as e:
            print(e.get_error_code(), e.get_error_domain(), e.get_error_message())
        try:
            dom.checkpointLookupByName('zz')
        except libvirt.libvirtError as e:
            print(e.get_error_code(), e.get_error_domain(), e.get_error_message())
        try:
            dom.hostname()
        except libvirt.libvirtError as e:
            print(e.get_error_code(), e.get_error_message())
        conn.close()
        """;

    [Fact]
    public async Task LibvirtPython_OpensLooksUpListsAndBranchesOnErrorCodes()
    {
        if (!File.Exists("/usr/bin/python3") || (await Peer.RunAsync("/usr/bin/python3", ["-c", "import libvirt"])).ExitCode != 0)
        {
            if (Peer.InCi)
            {
                Assert.Fail("/usr/bin/python3 with the libvirt module is not installed");
            }

            Assert.Skip("/usr/bin/python3 with the libvirt module is not installed");
        }

        await using var server = await TestRemoteServer.StartAsync();
        var vm1 = server.Hypervisor.AddDomain("vm1", running: true);
        server.Hypervisor.AddCheckpoint("vm1", "c1", null, 1_700_000_000);
        server.Hypervisor.AddCheckpoint("vm1", "c2", "c1", 1_700_000_100);
        var r = await Peer.RunAsync("/usr/bin/python3", ["-c", Script, server.Uri]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(
            "9000000\n" +
            $"vm1 {vm1.Uuid:D} 1 1\n" +
            "c1 c2\n" +
            "42 10 Domain not found: no domain with matching name 'nosuch'\n" +
            "103 10 Domain checkpoint not found: no domain checkpoint with matching name 'zz'\n" +
            "3 this function is not supported by the connection driver: virDomainGetHostname\n",
            r.Stdout);
    }
}
