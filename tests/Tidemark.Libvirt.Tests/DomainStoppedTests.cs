using Tidemark.Backup;
using Tidemark.Backup.Run;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Nbd;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// <c>virsh destroy</c> of a QEMU domain of a real libvirtd while the backup client copies its
/// disk: libvirt ends the backup job with the QEMU process and the NBD export goes away. The
/// client says so (the domain's state, asked of libvirtd afterwards) and the next run, once the
/// domain runs again, is what the message says.
/// </summary>
public sealed class DomainStoppedTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DomainDestroyedMidCopy_SaysTheJobEndedWithTheDomain_AndWhatTheNextRunDoes()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "stop", disks: 1);
        await guest.WriteAsync("vda", "write -P 0x61 0 1M");
        var lines = new List<string>();
        var first = await guest.BackupAsync(LevelRequest.Auto, lines);
        await guest.WriteAsync("vda", "write -P 0x62 0 24M");

        // Every copy thread waits at its first read until QEMU is gone.
        var destroyed = new Lazy<Task>(() => libvirtd.VirshOkAsync("destroy", guest.Name));
        lines.Clear();
        var options = new BackupRunOptions
        {
            Domain = guest.Name,
            Repository = guest.Repository,
            ConnectionUri = libvirtd.Uri,
            WorkDirectory = libvirtd.Directory.Path,
            Report = lines.Add,
            Progress = new OnFirstCopy(() => destroyed.Value.Wait(Ct)),
        };
        var failed = await Assert.ThrowsAsync<BackupException>(() => BackupRunner.RunAsync(options, Ct));
        Assert.Equal(BackupErrorReason.HostFailed, failed.Reason);

        // The NBD client's own words for the lost connection depend on which thread meets the
        // dead socket first, which a busy host reorders: the reply loop reading its end ("the
        // connection is dead: the server closed the connection" for the next request), a copy
        // thread resumed after the destroy writing its next request first ("cannot send a
        // request: … Broken pipe."), or a read still in flight when QEMU went ("the server
        // closed the connection"). Any of them is the lost connection the message explains, and
        // is quoted whole.
        var lost = Assert.IsType<NbdException>(failed.InnerException);
        Assert.Equal(NbdErrorReason.ConnectionClosed, lost.Reason);
        Assert.Equal(
            $"the backup job of domain '{guest.Name}' ended on the host: the domain stopped (shut off, destroyed) while its disks were being copied, and its NBD export went with it ({lost.Message}); nothing of this backup was stored. Once the domain runs again, the next run makes an incremental since checkpoint '{first.Checkpoint}', the last complete backup (or a full of any disk whose bitmap the host lost when the domain stopped)",
            failed.Message);
        Assert.Single(await guest.Repository.ReadManifestsAsync(guest.Name, Ct));

        // libvirt keeps the job's checkpoint: it deletes none of an inactive domain's.
        var left = $"tidemark.{first.Chain}.1";
        Assert.Contains($"the backup job has ended, but its checkpoint {left} could not be deleted from the host (Operation not supported: cannot delete checkpoint for inactive domain); the next run deletes it", lines);
        Assert.True(File.Exists(guest.Repository.PendingPath(guest.Name)));

        // QEMU stored the bitmap when libvirt stopped it (SIGTERM first): the next run is the
        // incremental the message names, after deleting the checkpoint left behind.
        await libvirtd.VirshOkAsync("start", guest.Name, "--paused");
        lines.Clear();
        var next = await guest.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(
            [
                $"deleted checkpoint {left} of an interrupted backup from the host",
                $"vda: incremental (incremental since checkpoint '{first.Checkpoint}')",
            ],
            lines.Take(2));
        Assert.Equal(24L << 20, next.Disks.Single().DataBytes);
        await guest.AssertHostCleanAsync([next.Checkpoint]);
    }

    private sealed class OnFirstCopy(Action action) : IBackupProgress
    {
        public void Planned(string disk, long bytes)
        {
        }

        public void Copied(string disk, long bytes) => action();
    }
}
