using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>libvirt-python 9.0 (<c>import libvirt</c> under /usr/bin/python3) as a client of the server.</summary>
public sealed class PythonTests
{
    private const string Script = """
        import sys, libvirt, libvirt_qemu
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
        print(dom.hostname())
        print(dom.getTime())
        print(dom.fsInfo())
        print(libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 5, 0))
        try:
            libvirt_qemu.qemuMonitorCommand(dom, 'info block', 1)
        except libvirt.libvirtError as e:
            print(e.get_error_code(), e.get_error_message())
        print(conn.getVersion())
        conn.close()
        """;

    [Fact]
    public async Task LibvirtPython_OpensLooksUpListsBranchesOnErrorCodesAndSpeaksTheQemuProgram()
    {
        await PythonLibvirt.RequireAsync();

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
            "guest-vm1\n" +
            "{'seconds': 1764806400, 'nseconds': 123456789}\n" +
            "[('/', 'vda1', 'ext4', ['vda']), ('/srv', 'md0', 'xfs', ['vda', 'vdb'])]\n" +
            "{\"return\":{}}\n" +
            "3 this function is not supported by the connection driver: virDomainQemuMonitorCommand\n" +
            "7002000\n",
            r.Stdout);
    }

    private const string FdScript = """
        import os, sys, libvirt
        conn = libvirt.open(sys.argv[1])
        dom = conn.lookupByName('vm1')
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        dom.FDAssociate('pair', [r1, w2], 0)
        print(os.fstat(r1).st_ino, os.fstat(w2).st_ino)
        sys.stdout.flush()
        # The server holds its own copies: the pipe written here reaches its read end there.
        os.write(w1, b'through')
        os.close(r1); os.close(w1); os.close(w2)
        sys.stdin.readline()
        print(os.read(r2, 100).decode())
        conn.close()
        """;

    [Fact]
    public async Task LibvirtPython_FdAssociate_PassesTheDescriptorsThemselves_HeldUntilTheConnectionCloses()
    {
        await using var server = await TestRemoteServer.StartAsync();
        server.Hypervisor.AddDomain("vm1", running: true);
        var python = new System.Diagnostics.Process
        {
            StartInfo = new("/usr/bin/python3", ["-c", FdScript, server.Uri]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true },
        };
        var errors = new System.Text.StringBuilder();
        python.ErrorDataReceived += (_, e) => errors.AppendLine(e.Data);
        python.Start();
        python.BeginErrorReadLine();
        var inodes = (await LineAsync(python))?.Split(' ');
        Assert.True(inodes is { Length: 2 }, errors.ToString());

        var (fds, _) = server.Hypervisor.FdGroups["pair"];
        Assert.Equal(2, fds.Count);
        Assert.Equal(inodes[0], Inode(fds[0]));
        Assert.Equal(inodes[1], Inode(fds[1]));
        var buffer = new byte[7];
        using (var read = new FileStream(fds[0], FileAccess.Read, 1))
        {
            await read.ReadExactlyAsync(buffer, TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        }

        Assert.Equal("through", System.Text.Encoding.ASCII.GetString(buffer));
        using (var write = new FileStream(fds[1], FileAccess.Write, 1))
        {
            await write.WriteAsync("back"u8.ToArray(), TestContext.Current.CancellationToken);
        }

        await python.StandardInput.WriteLineAsync();
        await python.StandardInput.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal("back", await LineAsync(python));
        await python.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        Assert.Equal(0, python.ExitCode);
        Assert.Empty(server.Hypervisor.FdGroups);
    }

    /// <summary>The child's next line, read off the test's thread (a redirected stream's reads block).</summary>
    private static Task<string?> LineAsync(System.Diagnostics.Process process)
        => Task.Run(process.StandardOutput.ReadLine, TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

    private static string Inode(Microsoft.Win32.SafeHandles.SafeFileHandle fd)
        => new FileInfo($"/proc/self/fd/{fd.DangerousGetHandle()}").LinkTarget is { } target && target.StartsWith("pipe:[", StringComparison.Ordinal) ? target[6..^1] : "?";
}
