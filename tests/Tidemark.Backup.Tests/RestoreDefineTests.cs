using Tidemark.Backup.Restore;
using Tidemark.Backup.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// <c>restore --define</c> on Tidemark's daemon through libvirt's protocol: the restored disks
/// equal their captures, and <c>virsh dumpxml</c> of the defined domain shows the backup's
/// domain with each disk's source the restored file; a name the host already uses is refused
/// before anything is written.
/// </summary>
public sealed class RestoreDefineTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task RestoreDefine_DefinesTheDomainWithTheRestoredDisks()
    {
        Peer.Require("virsh");
        await using var host = await BackupHost.StartAsync(("vda", "16M"), ("vdb", "8M"));
        await host.GuestWriteAsync("vda", "write -P 0x31 0 1M");
        await host.GuestWriteAsync("vdb", "write -P 0x32 2M 1M");
        var captures = new Dictionary<string, string> { ["vda"] = await host.CaptureAsync("vda", "a.raw"), ["vdb"] = await host.CaptureAsync("vdb", "b.raw") };
        var backup = await host.BackupAsync();

        var output = host.Directory.File("restored");
        var taken = host.Directory.File("refused");
        var refused = await Assert.ThrowsAsync<BackupException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = taken, DefineUri = host.Uri }, Ct));
        Assert.Equal(BackupErrorReason.OutputExists, refused.Reason);
        Assert.Equal("domain 'dom' already exists on the host; define the restored one under another name (--name)", refused.Message);
        Assert.False(Directory.Exists(taken));

        var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output, Format = ImageFormat.Qcow2, DefineUri = host.Uri, DefineName = "dom-restored" }, Ct);
        foreach (var disk in restored)
        {
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", disk.Path, captures[disk.Disk]]);
            Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        }

        var xml = await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "dumpxml", "dom-restored");
        foreach (var target in (string[])["vda", "vdb"])
        {
            Assert.Contains($"<source file='{Path.Combine(output, target + ".qcow2")}'", xml, StringComparison.Ordinal);
        }

        Assert.DoesNotContain(host.Images["vda"], xml, StringComparison.Ordinal);
        Assert.Contains("<driver name='qemu' type='qcow2'", xml, StringComparison.Ordinal);
        var original = await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "domuuid", "dom");
        var copy = await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "domuuid", "dom-restored");
        Assert.NotEqual(original, copy);
        Assert.Contains("shut off", await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "domstate", "dom-restored"), StringComparison.Ordinal);
        Assert.Equal(backup.Checkpoint, (await host.Repository.FindAsync("dom", null, Ct)).Manifest.Checkpoint);

        // A copy of vda alone: vdb, not restored, is left out rather than left naming the
        // original domain's image, which the copy would then write into.
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Disks = ["vda"], Output = host.Directory.File("only-vda.raw"), DefineUri = host.Uri, DefineName = "dom-vda" }, Ct);
        var vdaOnly = await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "dumpxml", "dom-vda");
        Assert.DoesNotContain("dev='vdb'", vdaOnly, StringComparison.Ordinal);
        Assert.DoesNotContain(host.Images["vdb"], vdaOnly, StringComparison.Ordinal);
        Assert.Contains($"<source file='{host.Directory.File("only-vda.raw")}'", vdaOnly, StringComparison.Ordinal);
    }
}
