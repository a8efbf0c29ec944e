using System.Net.Sockets;
using System.Security.Cryptography;
using Tidemark.Backup.Serve;
using Tidemark.Backup.Tests.Support;
using Tidemark.Backup.Verify;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// Instant recovery: a backup point served over NBD reads as the disk at that point (qemu-img
/// compare over the export), takes writes (qemu-io), and leaves the repository untouched.
/// </summary>
public sealed class RecoveryExportTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task ServedPoint_IsTheDiskAtThatPoint_AndWritesNeverReachTheRepository()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x71 0 2M");
        var full = await host.BackupAsync();
        var atFull = await host.CaptureAsync("vda", "full.raw");
        await host.GuestWriteAsync("vda", "write -P 0x72 1M 2M");
        await host.BackupAsync();

        var chainFile = host.Repository.PathOf("dom", full.Disks.Single().File);
        var before = SHA256.HashData(await File.ReadAllBytesAsync(chainFile, Ct));
        var socket = host.Directory.File("serve.sock");
        var overlays = host.Directory.File("overlays");
        var export = $"nbd+unix:///vda?socket={socket}";
        await using (var served = await RecoveryExport.StartAsync(host.Repository, "dom", full.Checkpoint, new UnixDomainSocketEndPoint(socket), overlays, null, Ct))
        {
            Assert.Equal(full.Checkpoint, served.Manifest.Checkpoint);
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", export, atFull]);
            Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);

            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x99 0 64k", "-c", "flush", export);
            var read = await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "read -P 0x99 0 64k", "-c", "read -P 0x71 64k 64k", export);
            Assert.DoesNotContain("fail", read, StringComparison.OrdinalIgnoreCase);
        }

        Assert.Empty(Directory.GetFiles(overlays));
        Assert.Equal(before, SHA256.HashData(await File.ReadAllBytesAsync(chainFile, Ct)));
        Assert.True((await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct)).Passed);
    }
}
