using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;

namespace Tidemark.Backup.Tests;

/// <summary>
/// The domain is destroyed (<c>virsh destroy</c>) while a backup copies its disks: the host
/// ends the backup job with the domain and the NBD export goes away. The run says so, after
/// asking the host, rather than only that its connection died; and the next run, once the
/// domain runs again, does what that message says.
/// </summary>
public sealed class DomainStoppedTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task DomainDestroyedMidCopy_SaysTheJobEndedWithTheDomain_AndWhatTheNextRunDoes()
    {
        await using var host = await BackupHost.StartAsync(("vda", "512M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        var first = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x62 0 256M");

        // Every copy thread waits at its first read until the domain is gone.
        var destroyed = new Lazy<Task>(async () =>
        {
            await using var client = await host.ConnectAsync();
            await client.DestroyDomainAsync(await client.LookupDomainByNameAsync(host.Domain, Ct), 0, Ct);
        });
        var lines = new List<string>();
        var options = host.Options(lines: lines) with { Progress = new OnFirstCopy(() => destroyed.Value.Wait(Ct)) };
        var failed = await Assert.ThrowsAsync<BackupException>(() => BackupRunner.RunAsync(options, Ct));
        Assert.Equal(BackupErrorReason.HostFailed, failed.Reason);
        Assert.StartsWith("the backup job of domain 'dom' ended on the host: the domain stopped (shut off, destroyed) while its disks were being copied, and its NBD export went with it (", failed.Message, StringComparison.Ordinal);
        Assert.EndsWith($"); nothing of this backup was stored. Once the domain runs again, the next run makes an incremental since checkpoint '{first.Checkpoint}', the last complete backup (or a full of any disk whose bitmap the host lost when the domain stopped)", failed.Message, StringComparison.Ordinal);
        Assert.Single(await host.Repository.ReadManifestsAsync("dom", Ct));
        Assert.Equal([first.Checkpoint], await host.HostCheckpointsAsync());

        // What the message promised: Tidemark's daemon stored the bitmap when it stopped the domain.
        await using (var client = await host.ConnectAsync())
        {
            await client.CreateDomainAsync(await client.LookupDomainByNameAsync(host.Domain, Ct), Ct);
        }

        lines.Clear();
        var next = await host.BackupAsync(lines: lines);
        Assert.Contains($"vda: incremental (incremental since checkpoint '{first.Checkpoint}')", lines);
        Assert.Equal(256L << 20, next.Disks.Single().DataBytes);
    }

    private sealed class OnFirstCopy(Action action) : IBackupProgress
    {
        public void Planned(string disk, long bytes)
        {
        }

        public void Copied(string disk, long bytes) => action();
    }
}
