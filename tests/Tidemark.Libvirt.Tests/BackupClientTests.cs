using Tidemark.Backup.Repository;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Verify;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Tidemark's backup client (<see cref="BackupRunner"/>, <see cref="DiskRestore"/>,
/// <see cref="RepositoryVerifier"/>) against a real libvirtd 9.0 and QEMU 7.2: the guest's
/// writes go through QEMU's block layer (HMP qemu-io), each point is captured by qemu-img from
/// the disk image QEMU has open after a flush, and every point restored, and every chain file
/// opened by qemu-img, equals its capture.
/// </summary>
public sealed class BackupClientTests(PrivateLibvirtdFixture fixture, LibvirtQemuLibvirtdFixture libvirtQemuFixture)
    : IClassFixture<PrivateLibvirtdFixture>, IClassFixture<LibvirtQemuLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task FullThenTwoIncrementals_TwoDisks_EveryPointRestoresToItsCapture()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bk", disks: 2);

        await guest.WriteAsync("vda", "write -P 0x61 0 2M", "write -P 0x62 8M 1M");
        await guest.WriteAsync("vdb", "write -P 0x63 4M 512k");
        var captures = new List<IReadOnlyDictionary<string, string>> { await guest.CaptureAsync("p0") };
        var lines = new List<string>();
        var full = await guest.BackupAsync(LevelRequest.Auto, lines);
        await guest.AssertHostCleanAsync([full.Checkpoint]);

        await guest.WriteAsync("vda", "write -P 0x71 1M 2M", "write -z 8M 64k", "write -P 0x72 20M 512k");
        await guest.WriteAsync("vdb", "write -P 0x64 12M 64k");
        captures.Add(await guest.CaptureAsync("p1"));
        var inc1 = await guest.BackupAsync(LevelRequest.Auto, lines);
        await guest.AssertHostCleanAsync([inc1.Checkpoint]);

        // A zero write over data, and vdb left alone: its incremental is empty.
        await guest.WriteAsync("vda", "write -P 0x81 0 64k", "write -z 1M 1M", "write -P 0x82 30M 1M");
        captures.Add(await guest.CaptureAsync("p2"));
        var inc2 = await guest.BackupAsync(LevelRequest.Incremental, lines);
        await guest.AssertHostCleanAsync([inc2.Checkpoint]);

        Assert.All(full.Disks, d => Assert.Equal(BackupLevel.Full, d.Level));
        Assert.All(inc1.Disks.Concat(inc2.Disks), d => Assert.Equal(BackupLevel.Incremental, d.Level));
        Assert.All(inc2.Disks, d => Assert.Equal(inc1.Checkpoint, d.Base));
        Assert.Contains($"vdb: incremental (incremental since checkpoint '{full.Checkpoint}')", lines);
        Assert.Equal($"tidemark.{full.Chain}.2", inc2.Checkpoint);

        // Data copied follows the bytes the guest wrote; zero writes travel as zeroes.
        Assert.Equal(3L << 20, full.Disk("vda")!.DataBytes);
        Assert.Equal(512L << 10, full.Disk("vdb")!.DataBytes);
        Assert.Equal((2L << 20) + (512L << 10), inc1.Disk("vda")!.DataBytes);
        Assert.Contains(inc1.Disk("vda")!.Extents, e => e is { Content: ExtentContent.Zero, Offset: 8L << 20 });
        Assert.Equal(64L << 10, inc1.Disk("vdb")!.DataBytes);
        Assert.Equal((64L << 10) + (1L << 20), inc2.Disk("vda")!.DataBytes);
        Assert.Contains(inc2.Disk("vda")!.Extents, e => e is { Content: ExtentContent.Zero, Offset: 1L << 20 });
        Assert.Equal(0, inc2.Disk("vdb")!.DataBytes);

        var points = new[] { full, inc1, inc2 };
        for (var i = 0; i < points.Length; i++)
        {
            var output = libvirtd.File($"{guest.Name}-r{i}");
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Checkpoint = points[i].Checkpoint, Output = output }, Ct);
            Assert.Equal(["vda", "vdb"], restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            foreach (var disk in restored)
            {
                await BackupGuest.AssertIdenticalAsync("raw", disk.Path, captures[i][disk.Disk]);
                var chainFile = guest.Repository.PathOf(guest.Name, points[i].Disk(disk.Disk)!.File);
                await BackupGuest.AssertIdenticalAsync("qcow2", chainFile, captures[i][disk.Disk]);
                var check = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", chainFile]);
                Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
            }
        }

        var verify = await RepositoryVerifier.RunAsync(guest.Repository, guest.Name, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
        Assert.Equal(6, verify.ChainFiles);
    }

    [Fact]
    public async Task CheckpointDeletedWithVirsh_AutoMakesAFullAndSaysWhy()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkdel", disks: 1);
        await guest.WriteAsync("vda", "write -P 0x51 0 1M");
        var full = await guest.BackupAsync(LevelRequest.Auto, []);

        await guest.WriteAsync("vda", "write -P 0x52 4M 1M");
        await libvirtd.VirshOkAsync("checkpoint-delete", guest.Name, full.Checkpoint);
        var capture = await guest.CaptureAsync("p1");
        var lines = new List<string>();
        var next = await guest.BackupAsync(LevelRequest.Auto, lines);

        var disk = next.Disk("vda")!;
        Assert.Equal(BackupLevel.Full, disk.Level);
        Assert.Equal($"checkpoint '{full.Checkpoint}' of the last backup no longer exists on the host (deleted)", disk.Reason);
        Assert.Contains($"vda: full ({disk.Reason})", lines);
        Assert.NotEqual(full.Chain, next.Chain);
        Assert.Equal(2L << 20, disk.DataBytes);
        await guest.AssertHostCleanAsync([next.Checkpoint]);

        var output = libvirtd.File($"{guest.Name}-r.raw");
        await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Output = output }, Ct);
        await BackupGuest.AssertIdenticalAsync("raw", output, capture["vda"]);
        var verify = await RepositoryVerifier.RunAsync(guest.Repository, guest.Name, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
    }

    /// <summary>
    /// What breaks one disk's chain on a real host makes a full of that disk only: a bitmap
    /// gone from the qcow2 node (libvirt refuses the incremental naming the disk, the runner
    /// retries it as a full), then a disk resized. (A disk hot-plugged since the last backup:
    /// <see cref="DiskHotplugged_FullOfItOnly_OthersStayIncremental_EveryPointRestores"/>.)
    /// </summary>
    [Fact]
    public async Task BitmapRemovedThenDiskResized_FullForThatDiskOnly_EveryPointRestores()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkbrk", disks: 2);
        await guest.WriteAsync("vda", "write -P 0x11 0 1M");
        await guest.WriteAsync("vdb", "write -P 0x12 0 1M");
        var captures = new List<IReadOnlyDictionary<string, string>> { await guest.CaptureAsync("p0") };
        var full = await guest.BackupAsync(LevelRequest.Auto, []);

        await guest.WriteAsync("vda", "write -P 0x21 2M 64k");
        await guest.WriteAsync("vdb", "write -P 0x22 2M 64k");
        await guest.RemoveBitmapAsync("vdb", full.Checkpoint);
        captures.Add(await guest.CaptureAsync("p1"));
        var lines = new List<string>();
        var broken = await guest.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(BackupLevel.Incremental, broken.Disk("vda")!.Level);
        Assert.Equal(64L << 10, broken.Disk("vda")!.DataBytes);
        Assert.Equal(BackupLevel.Full, broken.Disk("vdb")!.Level);
        Assert.Equal((1L << 20) + (64L << 10), broken.Disk("vdb")!.DataBytes);
        Assert.StartsWith("bitmap broken on the host: ", broken.Disk("vdb")!.Reason, StringComparison.Ordinal);
        Assert.Contains($"missing or broken bitmap '{full.Checkpoint}' for disk 'vdb'", broken.Disk("vdb")!.Reason, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("vdb: bitmap broken on the host", StringComparison.Ordinal));

        // libvirt deletes no checkpoint with a bitmap missing on one of its disks; the runner
        // redefines it without that disk first, so vda's old bitmap goes too.
        Assert.Contains($"checkpoint {full.Checkpoint} has no bitmap left on disk 'vdb': redefined without that disk to delete it", lines);
        Assert.Contains($"deleted checkpoint {full.Checkpoint} from the host: no disk's chain continues from it", lines);
        await guest.AssertHostCleanAsync([broken.Checkpoint]);
        await guest.AssertBitmapsAsync(present: broken.Checkpoint, absent: full.Checkpoint);

        await libvirtd.VirshOkAsync("blockresize", guest.Name, "vdb", "48M");
        await guest.WriteAsync("vda", "write -P 0x31 4M 64k");
        await guest.WriteAsync("vdb", "write -P 0x32 40M 64k");
        captures.Add(await guest.CaptureAsync("p2"));
        var changed = await guest.BackupAsync(LevelRequest.Auto, []);
        Assert.Equal(BackupLevel.Incremental, changed.Disk("vda")!.Level);
        Assert.Equal(BackupLevel.Full, changed.Disk("vdb")!.Level);
        Assert.Equal($"disk resized from {32L << 20} to {48L << 20} bytes since checkpoint '{broken.Checkpoint}'", changed.Disk("vdb")!.Reason);
        Assert.Equal(48L << 20, changed.Disk("vdb")!.VirtualSize);
        await guest.AssertHostCleanAsync([changed.Checkpoint]);

        var points = new[] { full, broken, changed };
        for (var i = 0; i < points.Length; i++)
        {
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Checkpoint = points[i].Checkpoint, Output = libvirtd.File($"{guest.Name}-r{i}") }, Ct);
            Assert.Equal(captures[i].Keys.Order(StringComparer.Ordinal), restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            foreach (var disk in restored)
            {
                await BackupGuest.AssertIdenticalAsync("raw", disk.Path, captures[i][disk.Disk]);
            }
        }

        var verify = await RepositoryVerifier.RunAsync(guest.Repository, guest.Name, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
    }

    /// <summary>
    /// A disk hot-plugged into the running guest after a full (<c>virsh attach-disk --live</c>,
    /// the domain defined with ACPI): the next run makes a full of that disk, saying why, while
    /// the others stay incremental; the run after it continues all three; every point restores.
    /// </summary>
    [Fact]
    public async Task DiskHotplugged_FullOfItOnly_OthersStayIncremental_EveryPointRestores()
    {
        var libvirtd = await fixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkadd", disks: 2, hotplug: true);
        await guest.WriteAsync("vda", "write -P 0x11 0 1M");
        await guest.WriteAsync("vdb", "write -P 0x12 1M 1M");
        var captures = new List<IReadOnlyDictionary<string, string>> { await guest.CaptureAsync("p0") };
        var full = await guest.BackupAsync(LevelRequest.Auto, []);

        await guest.AttachDiskAsync("vdc", "16M");
        Assert.Contains("<target dev='vdc' bus='virtio'/>", await libvirtd.VirshOkAsync("dumpxml", guest.Name), StringComparison.Ordinal);
        await guest.WriteAsync("vda", "write -P 0x21 4M 64k");
        await guest.WriteAsync("vdc", "write -P 0x23 2M 512k", "write -P 0x24 15M 64k");
        captures.Add(await guest.CaptureAsync("p1"));
        var lines = new List<string>();
        var added = await guest.BackupAsync(LevelRequest.Auto, lines);
        Assert.Equal(BackupLevel.Incremental, added.Disk("vda")!.Level);
        Assert.Equal(64L << 10, added.Disk("vda")!.DataBytes);
        Assert.Equal(BackupLevel.Incremental, added.Disk("vdb")!.Level);
        Assert.Equal(0, added.Disk("vdb")!.DataBytes);
        var vdc = added.Disk("vdc")!;
        Assert.Equal(BackupLevel.Full, vdc.Level);
        Assert.Equal("disk added since the last backup (none of it in the repository)", vdc.Reason);
        Assert.Equal((512L << 10) + (64L << 10), vdc.DataBytes);
        Assert.Contains($"vdc: full ({vdc.Reason})", lines);
        Assert.Equal(full.Chain, added.Chain);
        await guest.AssertHostCleanAsync([added.Checkpoint]);

        await guest.WriteAsync("vdc", "write -P 0x33 8M 64k");
        captures.Add(await guest.CaptureAsync("p2"));
        var next = await guest.BackupAsync(LevelRequest.Incremental, []);
        Assert.All(next.Disks, d => Assert.Equal(added.Checkpoint, d.Base));
        Assert.Equal(64L << 10, next.Disk("vdc")!.DataBytes);

        var points = new[] { full, added, next };
        for (var i = 0; i < points.Length; i++)
        {
            var restored = await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Checkpoint = points[i].Checkpoint, Output = libvirtd.File($"{guest.Name}-r{i}") }, Ct);
            Assert.Equal(captures[i].Keys.Order(StringComparer.Ordinal), restored.Select(r => r.Disk).Order(StringComparer.Ordinal));
            foreach (var disk in restored)
            {
                await BackupGuest.AssertIdenticalAsync("raw", disk.Path, captures[i][disk.Disk]);
            }
        }

        var verify = await RepositoryVerifier.RunAsync(guest.Repository, guest.Name, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
    }

    /// <summary>
    /// As a Debian system libvirtd runs it, QEMU is not root: it binds the export's socket in
    /// the client's work directory only if that account may write there.
    /// </summary>
    [Fact]
    public async Task QemuRunningAsLibvirtQemu_FullAndIncremental_RestoreToTheirCaptures()
    {
        var libvirtd = await libvirtQemuFixture.GetAsync();
        var guest = await BackupGuest.DefineAsync(libvirtd, "bkuser", disks: 1);
        var qemu = await Peer.RunCheckedAsync("ps", "-o", "user=", "-C", "qemu-system-x86_64");
        Assert.Contains("libvirt-qemu", qemu, StringComparison.Ordinal);

        await guest.WriteAsync("vda", "write -P 0x31 0 1M");
        var captures = new List<IReadOnlyDictionary<string, string>> { await guest.CaptureAsync("p0") };
        var full = await guest.BackupAsync(LevelRequest.Auto, []);
        await guest.WriteAsync("vda", "write -P 0x32 512k 1M");
        captures.Add(await guest.CaptureAsync("p1"));
        var inc = await guest.BackupAsync(LevelRequest.Incremental, []);
        await guest.AssertHostCleanAsync([inc.Checkpoint]);

        Assert.Equal(1L << 20, full.Disk("vda")!.DataBytes);
        Assert.Equal(1L << 20, inc.Disk("vda")!.DataBytes);
        var points = new[] { full, inc };
        for (var i = 0; i < points.Length; i++)
        {
            var output = libvirtd.File($"{guest.Name}-r{i}.raw");
            await DiskRestore.RunAsync(new RestoreOptions { Repository = guest.Repository, Domain = guest.Name, Checkpoint = points[i].Checkpoint, Output = output }, Ct);
            await BackupGuest.AssertIdenticalAsync("raw", output, captures[i]["vda"]);
        }
    }
}
