using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// A backup job running when its host closes with <see cref="DomainHost.CloseKeepingDomainsAsync"/>
/// goes on in the next host, as libvirtd's restart leaves QEMU's job running: a push finishes
/// copying, a pull serves the same instant again; guests write on both sides of the restart, and
/// the peers judge what the job produced (qemu-img compare against the disk captured at the
/// job's instant, nbdcopy and nbdinfo for the pull).
/// </summary>
public sealed class BackupHandOverTests
{
    private const long Size = 16 << 20;

    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PushRunningAtTheHandOver_GoesOnInTheNextHost_TheTargetIsTheInstant()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("p", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var image = test.ImagePath("p", vda);
        await Guest.RunAsync(socket, "vda", "write -P 0x41 0 4M", "write -P 0x42 8M 2M", "write -P 0x43 15M 1M");
        var instant = await DomainBackupTests.CaptureAsync(test, image, "i.raw");

        // Two copies reach the target, then the rest wait: the hand-over finds the job half-way.
        GatedImage? gate = null;
        domain.BackupStoreWrapper = store => gate = new GatedImage(store) { PassFirst = 2 };
        var target = test.Directory.File("full.qcow2");
        var backup = await domain.BeginBackupAsync(DomainBackupTests.Push(target, incremental: null), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await gate!.FirstArrival.WaitAsync(JobTimeout, Ct);
        var before = backup.Job.Info;

        await test.Host.CloseKeepingDomainsAsync();
        var left = await backup.Completion.WaitAsync(JobTimeout, Ct);
        Assert.True(backup.Job.HandedOver);
        Assert.Equal(BackupJobPhase.Running, left.Phase);
        Assert.True(File.Exists(target), "the hand-over removed the target");
        Assert.True(File.Exists(Path.Combine(test.StateRoot, "jobs", "p.carried")));
        Assert.Contains("<backupjob", await File.ReadAllTextAsync(Path.Combine(test.StateRoot, "run", "p.xml"), Ct), StringComparison.Ordinal);

        await test.ReopenAfterCrashAsync();
        Assert.Empty(test.Host.RemovedJobFiles);
        domain = test.Host.LookupByName("p");
        Assert.Equal(DomainState.Running, domain.State);
        var resumed = domain.Backup;
        Assert.NotNull(resumed);
        Assert.Equal(BackupMode.Push, resumed.Job.Mode);
        Assert.Equal(["vda"], resumed.Targets);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "p.carried")), "the resumed job's record was not taken back");

        // The guest overwrites everything the instant holds; what the job had not copied yet is
        // copied aside first.
        await Guest.RunAsync(socket, "vda", "write -P 0x51 0 4M", "write -P 0x52 8M 2M", "write -P 0x53 15M 1M");
        var info = await resumed.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.True(info.Success, info.ErrorMessage);
        Assert.Equal(before.BytesTotal, info.BytesTotal);
        Assert.Equal(info.BytesTotal, info.BytesProcessed);
        Assert.Equal(BackupJobPhase.Completed, domain.TakeCompletedBackupInfo(keep: false)!.Phase);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "p.files")));
        Assert.Null(domain.Running!.DiskByTarget("vda")!.Guest.Interceptor);
        await Documents.AssertCleanAsync(target);
        await Documents.AssertSameContentAsync(target, "qcow2", instant);

        // The checkpoint begun with the job tracked the writes on both sides of the restart.
        Assert.Equal("c1", domain.Checkpoints.CurrentName);
        Assert.True(domain.Running.Disks[0].HasValidBitmap("c1"));
    }

    [Fact]
    public async Task IncrementalPullRunningAtTheHandOver_ServesTheSameInstantFromTheNextHost()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("q", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var image = test.ImagePath("q", vda);
        await Guest.RunAsync(socket, "vda", "write -P 0x41 0 4M");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x42 1M 64k", "write -P 0x43 8M 1M");
        var instant = await DomainBackupTests.CaptureAsync(test, image, "i.raw");

        var scratch = test.Directory.File("scratch.qcow2");
        var pull = test.Directory.File("pull.sock");
        var backup = await domain.BeginBackupAsync(
            $"<domainbackup mode='pull'><incremental>c0</incremental><server transport='unix' socket='{pull}'/><disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks></domainbackup>",
            "<domaincheckpoint><name>b1</name></domaincheckpoint>",
            cancellationToken: Ct);

        // Copied aside before the restart, into the scratch the next host must read back.
        await Guest.RunAsync(socket, "vda", "write -P 0x51 0 2M");
        var copiedBefore = backup.Job.Info.ScratchBytesInUse;
        Assert.True(copiedBefore >= 2 << 20, $"{copiedBefore} bytes in the scratch");

        await test.Host.CloseKeepingDomainsAsync();
        Assert.True(backup.Job.HandedOver);
        Assert.True(File.Exists(scratch), "the hand-over removed the scratch");
        Assert.False(File.Exists(pull), "the closed host still serves the pull");

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("q");
        var resumed = domain.Backup;
        Assert.NotNull(resumed);
        Assert.Equal(BackupJobPhase.Running, resumed.Job.Info.Phase);
        Assert.Equal(copiedBefore, resumed.Job.Info.ScratchBytesInUse);
        Assert.True(File.Exists(Path.Combine(test.StateRoot, "jobs", "q.files")), "the resumed job's record was not taken back");
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "q.carried")));
        Assert.Contains($"<scratch file='{scratch}'", domain.GetBackupXml(), StringComparison.Ordinal);

        // Copied aside after it, into the same scratch.
        await Guest.RunAsync(socket, "vda", "write -P 0x52 4M 8M");
        Assert.True(resumed.Job.Info.ScratchBytesInUse > copiedBefore);

        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={pull}", copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);

        // The export's dirty bitmap is still the one the job began with: what changed since c0.
        var map = await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:backup-vda", $"nbd+unix:///vda?socket={pull}");
        Assert.Equal(
            ["0 1048576 0 clean", "1048576 65536 1 dirty", "1114112 7274496 0 clean", "8388608 1048576 1 dirty", "9437184 7340032 0 clean"],
            map.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))));

        domain.AbortBackup();
        var info = await resumed.Completion.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.False(File.Exists(scratch), "the scratch outlived the job");
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "q.files")));
        Assert.Equal(["b1", "c0"], (await domain.Checkpoints.ListAsync(cancellationToken: Ct)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task CarriedJobWhoseTargetIsGone_EndsAtTheTakeUp_TheDomainRunsOn()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("g", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x41 0 4M");
        GatedImage? gate = null;
        domain.BackupStoreWrapper = store => gate = new GatedImage(store);
        var target = test.Directory.File("full.qcow2");
        await domain.BeginBackupAsync(DomainBackupTests.Push(target, incremental: null), null, cancellationToken: Ct);
        await gate!.FirstArrival.WaitAsync(JobTimeout, Ct);
        await test.Host.CloseKeepingDomainsAsync();

        File.Delete(target);
        await test.ReopenAfterCrashAsync();

        domain = test.Host.LookupByName("g");
        Assert.Equal(DomainState.Running, domain.State);
        Assert.Null(domain.Backup);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "g.files")));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "g.carried")));
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "read -P 0x41 0 4M", "write -P 0x42 0 64k");
    }

    [Fact]
    public async Task HandOverCutShortWithAJob_IsACrash_TheJobsFilesGo()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("c", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var definition = domain.Definition;
        GatedImage? gate = null;
        domain.BackupStoreWrapper = store => gate = new GatedImage(store);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x41 0 4M");
        var target = test.Directory.File("full.qcow2");
        await domain.BeginBackupAsync(DomainBackupTests.Push(target, incremental: null), null, cancellationToken: Ct);
        await gate!.FirstArrival.WaitAsync(JobTimeout, Ct);
        await test.Host.CloseKeepingDomainsAsync();

        // As the record reads when a kill comes after the job's record was carried over but
        // before the images were flushed.
        await new State.DomainStatus(definition, 1, Paused: false, TcpPort: null, HandedOver: false).WriteAsync(Path.Combine(test.StateRoot, "run", "c.xml"), Ct);
        await test.ReopenAfterCrashAsync();

        domain = test.Host.LookupByName("c");
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.True(domain.EndedByHostCrash);
        Assert.Contains(target, test.Host.RemovedJobFiles);
        Assert.False(File.Exists(target));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(test.StateRoot, "jobs")));
    }
}
