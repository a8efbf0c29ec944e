using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// A TLS pull backup begun by stock virsh (<c>&lt;server … tls='yes'/&gt;</c>): the daemon's
/// certificates come from <c>--backup-tls-dir</c> (libvirt's <c>backup_tls_x509_cert_dir</c>);
/// nbdcopy with the CA and a client certificate reads the instant, a plain client is refused.
/// </summary>
public sealed class BackupTlsTests
{
    [Fact]
    public async Task Virsh_TlsPull_ServesTheInstantToCertifiedClientsOnly()
    {
        X509Credentials? pki = null;
        await using var test = await TestDaemon.StartAsync(async (directory, options) =>
        {
            pki = await X509Credentials.CreateAsync(directory);
            return options with { BackupTlsDirectory = pki.ServerDirectory };
        });
        var image = await test.StartDomainAsync("tls", "write -P 0x74 0 2M");
        var instant = await test.CaptureAsync(image, "instant.raw");
        var port = LoopbackPort.Free();
        var pull = test.Directory.File("pull.xml");
        await File.WriteAllTextAsync(pull, $"<domainbackup mode='pull'><server name='localhost' port='{port}' tls='yes'/><disks><disk name='vda' type='file'><scratch file='{test.Directory.File("scratch.qcow2")}'/></disk></disks></domainbackup>", TestDaemon.Ct);

        Assert.Contains("Backup started", await Virsh.RunOkAsync(test, "backup-begin", "tls", pull), StringComparison.Ordinal);
        await test.GuestWriteAsync("tls", "vda", "write -P 0x75 0 4M");
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbds://localhost:{port}/vda?tls-certificates={pki!.ClientDirectory}", copy);

        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, instant]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        Assert.NotEqual(0, (await Peer.RunAsync("nbdinfo", [$"nbd://localhost:{port}/vda"])).ExitCode);
        await Virsh.RunOkAsync(test, "domjobabort", "tls");
        await test.WaitForJobEndAsync("tls");
    }
}
