using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// A pull backup served on the caller's own socket (<c>&lt;server transport='fd'
/// fdgroup='NAME'/&gt;</c>, spec §3.1 and §6.7 step 12): the fd groups of
/// <c>virDomainFDAssociate</c>, read by nbdcopy and nbdinfo through the caller's socket path;
/// and TLS pulls begun by a domain, with the host's backup TLS directory.
/// </summary>
public sealed class FdTransportTests
{
    private const long Size = 16 << 20;
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Pull(string group, string scratch, string extra = "") => $"""
        <domainbackup mode='pull'>
          <server transport='fd' fdgroup='{group}'{extra}/>
          <disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks>
        </domainbackup>
        """;

    /// <summary>A unix socket bound at <paramref name="path"/> and not listening, as libvirt's documentation prepares one.</summary>
    private static Socket BoundSocket(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    [Fact]
    public async Task PullOnTheCallersSocket_ServesTheInstant_AndTheGroupOutlivesTheJobUntilItsOwnerLetsGo()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("f", Size, vda);
        await domain.StartAsync(Ct);
        var guest = domain.Running!.SocketPath;
        await Guest.RunAsync(guest, "vda", "write -P 0x41 0 2M", "write -P 0x42 8M 1M");
        var instant = await DomainBackupTests.CaptureAsync(test, test.ImagePath("f", vda), "instant.raw");
        var path = test.Directory.File("mine.sock");
        var owner = new object();
        using var mine = BoundSocket(path);
        domain.AssociateFds("nbd", [mine.SafeHandle], FdAssociateFlags.SeclabelRestore, owner);
        var scratch = test.Directory.File("scratch.qcow2");

        var backup = await domain.BeginBackupAsync(Pull("nbd", scratch), null, cancellationToken: Ct);
        await Guest.RunAsync(guest, "vda", "write -P 0x51 0 4M", "write -P 0x52 8M 64k");
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", Guest.Uri(path, "vda"), copy);

        await Documents.AssertSameContentAsync(copy, "raw", instant);
        Assert.Contains("<server transport='fd' fdgroup='nbd'/>", domain.GetBackupXml(), StringComparison.Ordinal);
        domain.AbortBackup();
        Assert.Equal(BackupJobPhase.Completed, (await backup.Completion.WaitAsync(JobTimeout, Ct)).Phase);

        // The socket and its path are the caller's: the job closed only its duplicate, and the
        // group serves the next job.
        Assert.True(File.Exists(path));
        Assert.Equal(["nbd"], domain.FdGroupNames());
        backup = await domain.BeginBackupAsync(Pull("nbd", scratch), null, cancellationToken: Ct);
        Assert.Equal(Size.ToString(System.Globalization.CultureInfo.InvariantCulture), (await Peer.RunCheckedAsync("nbdinfo", "--size", Guest.Uri(path, "vda"))).Trim());
        domain.AbortBackup();
        await backup.Completion.WaitAsync(JobTimeout, Ct);

        // Gone with its owner (libvirt: the connection that associated it).
        domain.ReleaseFdGroups(new object());
        Assert.Equal(["nbd"], domain.FdGroupNames());
        domain.ReleaseFdGroups(owner);
        Assert.Empty(domain.FdGroupNames());
        var e = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(Pull("nbd", scratch), null, cancellationToken: Ct));
        Assert.Equal("invalid argument: file descriptor group 'nbd' was not associated with the domain", e.Message);
    }

    [Fact]
    public async Task PullOnTheCallersTcpSocket_IsServedThere()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("n", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        using var mine = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        mine.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var port = ((System.Net.IPEndPoint)mine.LocalEndPoint!).Port;
        domain.AssociateFds("tcp", [mine.SafeHandle]);

        var backup = await domain.BeginBackupAsync(Pull("tcp", test.Directory.File("scratch.qcow2")), null, cancellationToken: Ct);

        Assert.Equal(Size.ToString(System.Globalization.CultureInfo.InvariantCulture), (await Peer.RunCheckedAsync("nbdinfo", "--size", $"nbd://127.0.0.1:{port}/vda")).Trim());
        domain.AbortBackup();
        Assert.Equal(BackupJobPhase.Completed, (await backup.Completion.WaitAsync(JobTimeout, Ct)).Phase);
    }

    [Fact]
    public async Task UnusableGroups_AreRefusedWithLibvirtsWords_AndNothingIsLeftOnDisk()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("g", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var scratch = test.Directory.File("scratch.qcow2");

        var missing = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(Pull("none", scratch), null, cancellationToken: Ct));
        Assert.Equal(LibvirtErrorCode.InvalidArg, missing.Code);
        Assert.Equal("invalid argument: file descriptor group 'none' was not associated with the domain", missing.Message);

        using var first = BoundSocket(test.Directory.File("a.sock"));
        using var second = BoundSocket(test.Directory.File("b.sock"));
        domain.AssociateFds("two", [first.SafeHandle, second.SafeHandle]);
        var two = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(Pull("two", scratch), null, cancellationToken: Ct));
        Assert.Equal(LibvirtErrorCode.InvalidArg, two.Code);
        Assert.Equal("invalid argument: file descriptor group 'two' must contain only 1 file descriptor for NBD server", two.Message);

        // A descriptor that is no socket cannot serve: the job does not begin, its scratch goes.
        var file = test.Directory.File("plain.txt");
        await File.WriteAllTextAsync(file, "not a socket", Ct);
        domain.AssociateFds("file", [File.OpenHandle(file)]);
        var notSocket = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(Pull("file", scratch), null, cancellationToken: Ct));
        Assert.Equal(LibvirtErrorCode.OperationFailed, notSocket.Code);
        Assert.StartsWith("operation failed: cannot start the backup NBD server on file descriptor group 'file': ", notSocket.Message, StringComparison.Ordinal);

        Assert.Null(domain.Backup);
        Assert.False(File.Exists(scratch));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "g.files")));
        Assert.Equal("not a socket", await File.ReadAllTextAsync(file, Ct));

        // The association itself: libvirt's checks of the call.
        var none = Assert.Throws<EngineException>(() => domain.AssociateFds("empty", []));
        Assert.Equal("nfds in virDomainFDAssociate must not be zero", none.Message);
        var flags = Assert.Throws<EngineException>(() => domain.AssociateFds("bad", [File.OpenHandle(file)], (FdAssociateFlags)4));
        Assert.Equal("unsupported flags (0x4) in function qemuDomainFDAssociate", flags.Message);
        Assert.Equal(["file", "two"], domain.FdGroupNames());
    }

    [Fact]
    public async Task ReassociatingAName_ClosesTheGroupItReplaces()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("r", Size, new TestDisk("vda"));
        var file = test.Directory.File("f.txt");
        await File.WriteAllTextAsync(file, "x", Ct);
        SafeFileHandle old = File.OpenHandle(file);
        domain.AssociateFds("g", [old]);

        domain.AssociateFds("g", [File.OpenHandle(file)]);

        Assert.True(old.IsClosed);
        Assert.Equal(["g"], domain.FdGroupNames());
    }

    [Fact]
    public async Task TlsPull_UsesTheHostsBackupTlsDirectory()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("t", Size, vda);
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x61 0 1M");
        var instant = await DomainBackupTests.CaptureAsync(test, test.ImagePath("t", vda), "instant.raw");
        var port = LoopbackPort.Free();
        var pull = $"""
            <domainbackup mode='pull'>
              <server name='localhost' port='{port}' tls='yes'/>
              <disks><disk name='vda' type='file'><scratch file='{test.Directory.File("scratch.qcow2")}'/></disk></disks>
            </domainbackup>
            """;
        var unset = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(pull, null, cancellationToken: Ct));
        Assert.Equal("Requested operation is not valid: backup TLS directory not configured", unset.Message);

        var pki = await X509Credentials.CreateAsync(test.Directory);
        test.Host.BackupTlsDirectory = pki.ServerDirectory;
        var backup = await domain.BeginBackupAsync(pull, null, cancellationToken: Ct);
        await Guest.RunAsync(domain.Running.SocketPath, "vda", "write -P 0x62 0 1M");
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbds://localhost:{port}/vda?tls-certificates={pki.ClientDirectory}", copy);

        await Documents.AssertSameContentAsync(copy, "raw", instant);
        Assert.NotEqual(0, (await Peer.RunAsync("nbdinfo", [$"nbd://localhost:{port}/vda"])).ExitCode);
        domain.AbortBackup();
        await backup.Completion.WaitAsync(JobTimeout, Ct);
    }
}
