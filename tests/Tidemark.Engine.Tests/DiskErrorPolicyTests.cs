using Tidemark.Engine.Disks;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A guest write that finds the host's file system full, under the default error policy
/// (QEMU's werror=enospc): the domain pauses with the write held, the pause and the disk's
/// io-status are carried to the next host, and a resume once there is room lets the guest's
/// write (sent again after its reconnect) through. qemu-io over NBD is the guest; the events are
/// checked as the host raises them.
/// </summary>
public sealed class DiskErrorPolicyTests
{
    private const long Size = 16 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task APauseForAFullFileSystem_IsHandedOver_AndTheResumeLetsTheWriteThrough()
    {
        await using var test = await TestHost.CreateAsync();
        var small = test.Directory.File("small");
        var vda = new TestDisk("vda", Path: Path.Combine(small, "vda.qcow2"));
        await using var mount = await TmpfsMount.SmallAsync(small, 2 << 20);
        var domain = await test.DefineAsync("io", Size, vda);
        await domain.StartAsync(Ct);
        var announced = new List<GuestIoErrorEventArgs>();
        test.Host.GuestIoError += (_, e) =>
        {
            lock (announced)
            {
                announced.Add(e);
            }
        };

        var socket = domain.Running!.SocketPath;
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 4M", "-c", "flush", $"nbd+unix:///vda?socket={socket}"]);
        await WaitForPauseAsync(domain);
        Assert.False(write.IsCompleted, "the write that found no space was answered");
        Assert.Equal(DiskIoStatus.NoSpace, domain.Running!.DiskByTarget("vda")!.IoStatus);
        lock (announced)
        {
            var error = Assert.Single(announced);
            Assert.Equal(("vda", vda.Path, DiskErrorAction.Stop, true, true), (error.Target, error.Source, error.Action, error.NoSpace, error.PausedDomain));
        }

        // Room is made, then the host hands the domain over paused (a hand-over must write the
        // images' metadata, which a full file system refuses: the domain would be reported
        // crashed instead). The guest's connection ends, its write unanswered; the next host
        // has the domain paused for the same error.
        await Peer.RunCheckedAsync("mount", "-o", "remount,size=64m", small);
        await test.Host.CloseKeepingDomainsAsync();
        Assert.DoesNotContain("wrote 4194304/4194304", (await write).Stdout, StringComparison.Ordinal);
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("io");
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.True(domain.PausedByIoError);
        Assert.Equal(DiskIoStatus.NoSpace, domain.Running!.DiskByTarget("vda")!.IoStatus);

        // The guest sends its write again (a QEMU guest with reconnect-delay does); it waits
        // for the resume.
        var again = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 4M", "-c", "flush", $"nbd+unix:///vda?socket={socket}"]);
        await domain.ResumeAsync(Ct);
        Assert.Contains("wrote 4194304/4194304 bytes at offset 0", (await again).EnsureSuccess().Stdout, StringComparison.Ordinal);
        Assert.Equal(DomainState.Running, domain.State);
        Assert.False(domain.PausedByIoError);

        // QEMU keeps the io-status until the domain stops.
        Assert.Equal(DiskIoStatus.NoSpace, domain.Running!.DiskByTarget("vda")!.IoStatus);
        await domain.DestroyAsync(Ct);
        Assert.Contains("No errors were found on the image.", await Peer.RunCheckedAsync("qemu-img", "check", vda.Path!), StringComparison.Ordinal);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x66 0 4M", vda.Path!);
        await domain.StartAsync(Ct);
        Assert.Equal(DiskIoStatus.Ok, domain.Running!.DiskByTarget("vda")!.IoStatus);
        await domain.DestroyAsync(Ct);
    }

    [Fact]
    public async Task ErrorPolicies_ActAsQemusDeviceActs()
    {
        // libvirt hands error_policy to reads as well unless it is enospace or rerror_policy is given.
        Assert.Equal(new DiskErrorPolicy("enospace", "report"), DiskErrorPolicy.Of(Disk(null, null)));
        Assert.Equal(new DiskErrorPolicy("stop", "stop"), DiskErrorPolicy.Of(Disk("stop", null)));
        Assert.Equal(new DiskErrorPolicy("enospace", "report"), DiskErrorPolicy.Of(Disk("enospace", null)));
        Assert.Equal(new DiskErrorPolicy("ignore", "report"), DiskErrorPolicy.Of(Disk("ignore", "report")));
        var defaults = DiskErrorPolicy.Default;
        Assert.Equal(DiskErrorAction.Stop, defaults.ActionFor(write: true, noSpace: true));
        Assert.Equal(DiskErrorAction.Report, defaults.ActionFor(write: true, noSpace: false));
        Assert.Equal(DiskErrorAction.Report, defaults.ActionFor(write: false, noSpace: true));
        Assert.Equal(DiskErrorAction.Stop, DiskErrorPolicy.Of(Disk("stop", null)).ActionFor(write: false, noSpace: false));
        Assert.Equal(DiskErrorAction.Ignore, DiskErrorPolicy.Of(Disk("ignore", null)).ActionFor(write: true, noSpace: false));

        // Only the image's I/O failing counts; a request refused before any I/O does not.
        Assert.True(DiskErrorPolicy.IsNoSpace(new IOException("No space left on device", 28)));
        Assert.True(DiskErrorPolicy.IsIoFailure(new IOException("Input/output error", 5)));
        Assert.False(DiskErrorPolicy.IsNoSpace(new IOException("Input/output error", 5)));
        Assert.True(DiskErrorPolicy.IsIoFailure(new InvalidOperationException("copy before write failed", new IOException("No space left on device", 28))));
        Assert.False(DiskErrorPolicy.IsIoFailure(new Storage.StorageException(Storage.StorageErrorReason.ReadOnly, "read-only", new IOException("x", 5))));
        Assert.False(DiskErrorPolicy.IsIoFailure(new OperationCanceledException()));
        Assert.False(DiskErrorPolicy.IsIoFailure(new ArgumentOutOfRangeException("offset")));
        await Task.CompletedTask;
    }

    private static Formats.Domains.DomainDisk Disk(string? write, string? read) => new(
        Formats.Domains.DiskSourceType.File, Formats.Domains.DiskDevice.Disk, "qemu", "qcow2", "/i.qcow2", "vda", "virtio", ReadOnly: false, ErrorPolicy: write, ReadErrorPolicy: read);

    private static async Task WaitForPauseAsync(Domain domain)
    {
        for (var attempt = 0; !domain.PausedByIoError || domain.State != DomainState.Paused; attempt++)
        {
            Assert.True(attempt < 300, "the write that found no space did not pause the domain");
            await Task.Delay(100, Ct);
        }
    }
}
