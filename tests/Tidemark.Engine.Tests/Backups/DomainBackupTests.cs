using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Backups begun by a running domain (spec §6.7): qemu-io writes through the domain's NBD
/// export before and after each begin; qemu-img compare judges every target against a copy of
/// the disk taken at the backup's instant.
/// </summary>
public sealed class DomainBackupTests
{
    private const long Size = 16 << 20;
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PushFullThenIncremental_WithCheckpointsInTheSameInstant_RestoreEachInstant()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("b", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var image = test.ImagePath("b", vda);
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 1M", "write -P 0x62 4M 512k");

        // The guest is quiet while the instant is captured; it writes again as soon as the job runs.
        var instant1 = await CaptureAsync(test, image, "i1.raw");
        var full = test.Directory.File("full.qcow2");
        var backup = await domain.BeginBackupAsync(Push(full, incremental: null), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x71 0 2M", "write -z 4M 64k", "write -P 0x72 12M 1M");
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Equal(["c1"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Null(domain.Backup);
        Assert.Null(domain.Running.DiskByTarget("vda")!.Guest.Interceptor);
        await Documents.AssertCleanAsync(full);
        await Documents.AssertSameContentAsync(full, "qcow2", instant1);

        // Incremental since c1, with c2 at its instant: exactly what was written since c1.
        var instant2 = await CaptureAsync(test, image, "i2.raw");
        var inc = test.Directory.File("inc.qcow2");
        backup = await domain.BeginBackupAsync(Push(inc, incremental: "c1"), "<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x81 1M 3M", "write -P 0x82 12M 64k");
        info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Equal((2 << 20) + (64 << 10) + (1 << 20), info.BytesTotal);
        Assert.Equal("c1", await domain.Checkpoints.GetParentAsync("c2", Ct));
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-b", full, "-F", "qcow2", inc);
        await Documents.AssertSameContentAsync(inc, "qcow2", instant2);

        // The completed statistics are handed out once, unless kept.
        Assert.Equal(BackupJobPhase.Completed, domain.TakeCompletedBackupInfo(keep: true)!.Phase);
        Assert.NotNull(domain.TakeCompletedBackupInfo(keep: false));
        Assert.Null(domain.TakeCompletedBackupInfo(keep: false));

        // c2's bitmap started at the second instant: only the writes after it.
        Assert.Contains("size='3211264'", await domain.Checkpoints.GetXmlAsync("c2", CheckpointFormatFlags.Size, Ct));
        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", image);
    }

    [Fact]
    public async Task Pull_OneJobPerDomain_AbortEndsItCompleted_AndRemovesTheScratch()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("p", Size, new TestDisk("vda"));
        var scratch = test.Directory.File("scratch.qcow2");
        var pull = $"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{test.Directory.File("pull.sock")}'/>
              <disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks>
            </domainbackup>
            """;

        var inactive = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(pull, null, cancellationToken: Ct));
        Assert.Equal("Operation not supported: cannot perform disk backup for inactive domain", inactive.Message);

        await domain.StartAsync(Ct);
        var missing = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(Push(test.Directory.File("y.qcow2"), "nope"), null, cancellationToken: Ct));
        Assert.Equal("Domain checkpoint not found: Checkpoint 'nope' for incremental backup of disk 'vda' not found", missing.Message);

        var backup = await domain.BeginBackupAsync(pull, null, cancellationToken: Ct);
        Assert.True(File.Exists(scratch));

        // The scratch is an overlay of the live disk, as libvirt creates it (spec §6.7 step 11).
        var scratchInfo = System.Text.Json.JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", scratch)).RootElement;
        Assert.Equal(test.ImagePath("p", new TestDisk("vda")), scratchInfo.GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", scratchInfo.GetProperty("backing-filename-format").GetString());
        Assert.Contains(scratch, domain.GetBackupXml(), StringComparison.Ordinal);

        // A second begin waits for the running job, as libvirt's waits for the domain's async
        // job, and fails once the wait is over (virDomainObjBeginJobInternal): nothing created.
        test.Host.JobWaitTime = TimeSpan.FromMilliseconds(300);
        var second = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(Push(test.Directory.File("x.qcow2"), null), null, cancellationToken: Ct));
        Assert.Equal(LibvirtErrorCode.OperationTimeout, second.Code);
        Assert.Equal("Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)", second.Message);
        Assert.False(File.Exists(test.Directory.File("x.qcow2")));
        Assert.Same(backup, domain.Backup);

        domain.AbortBackup();
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.False(File.Exists(scratch));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "p.files")));
        Assert.Equal("Requested operation is not valid: no job is active on the domain", Assert.Throws<EngineException>(domain.AbortBackup).Message);
        Assert.Equal(LibvirtErrorCode.NoDomainBackup, Assert.Throws<EngineException>(() => domain.GetBackupXml()).Code);
    }

    [Theory]
    [InlineData(true, "Read-only file system")]
    [InlineData(false, "No space left on device")]
    public async Task PushTargetThatCannotBeCreated_IsRefused_AndNothingChanged(bool readOnly, string cause)
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("t", Size, vda);
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);
        var directory = test.Directory.File("targets");
        var target = Path.Combine(directory, "full.qcow2");
        await using (readOnly ? await TmpfsMount.ReadOnlyAsync(directory) : await TmpfsMount.FullAsync(directory))
        {
            var error = await Assert.ThrowsAsync<BackupJobException>(() => domain.BeginBackupAsync(Push(target, incremental: null), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));

            // A system error, as libvirt reports it: no prefix, strerror after the path.
            Assert.Equal(LibvirtErrorCode.SystemError, error.Code);
            Assert.Contains(cause, error.InnerException!.Message, StringComparison.Ordinal);
            Assert.Equal($"failed to create image file '{target}': {cause}", error.Message);
            Assert.False(File.Exists(target));
        }

        // No job, no checkpoint of the same instant, no record of files to remove.
        Assert.Null(domain.Backup);
        Assert.Equal(["c0"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Equal("c0", domain.Checkpoints.CurrentName);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "t.files")));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "checkpoint", "t", "c1.xml")));
        await domain.DestroyAsync(Ct);
        Assert.Equal(["c0"], await ImageBitmaps.NamesAsync(test.ImagePath("t", vda)));
    }

    [Fact]
    public async Task Crash_DuringAJob_NextStartRemovesItsFiles_AndDestroyEndsARunningJob()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("c", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var scratch = test.Directory.File("scratch.qcow2");
        var socket = test.Directory.File("pull.sock");
        var backup = await domain.BeginBackupAsync($"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{socket}'/>
              <disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks>
            </domainbackup>
            """, null, cancellationToken: Ct);
        Assert.Equal([socket, scratch], await File.ReadAllLinesAsync(Path.Combine(test.StateRoot, "jobs", "c.files"), Ct));

        // What a crash leaves: the record, the pull server's socket and the scratch; the next
        // host removes them all.
        var crashed = test.Host;
        await test.ReopenAfterCrashAsync();
        Assert.Equal([socket, scratch], test.Host.RemovedJobFiles);
        Assert.False(File.Exists(scratch));
        Assert.False(File.Exists(socket));

        // Stopping a domain ends its job first, cancelled even though an aborted pull counts
        // as completed (spec §6.11), and its disks close cleanly.
        await domain.DestroyAsync(Ct);
        Assert.True(backup.Completion.IsCompleted);
        Assert.Equal(BackupJobPhase.Cancelled, (await backup.Completion).Phase);
        Assert.Equal(BackupJobPhase.Cancelled, domain.TakeCompletedBackupInfo(keep: true)?.Phase);
        Assert.Null(domain.Backup);
        await crashed.DisposeAsync();
        await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("c", new TestDisk("vda")));
    }

    [Fact]
    public async Task ReuseExternal_IncrementalTargetBackedByTheLiveDisk_IsOpenedAndFilled()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("r", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var image = test.ImagePath("r", vda);
        await Guest.RunAsync(socket, "vda", "write -P 0x31 0 2M");
        var checkpoint = await CaptureAsync(test, image, "c1.raw");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x32 1M 64k", "write -z 8M 128k", "write -P 0x33 15M 1M");
        var instant = await CaptureAsync(test, image, "i.raw");

        // What a user (or libvirt's own docs) prepares for REUSE_EXTERNAL: an overlay of the
        // live disk, which is open read-write and locked by the running domain.
        var target = test.Directory.File("inc.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", image, "-F", "qcow2", target, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var backup = await domain.BeginBackupAsync(Push(target, "c1"), null, BackupBeginFlags.ReuseExternal, Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x34 1M 2M");
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.True(info.Success, info.ErrorMessage);
        await domain.DestroyAsync(Ct);
        await Documents.AssertCleanAsync(target);
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-b", checkpoint, "-F", "raw", target);
        await Documents.AssertSameContentAsync(target, "qcow2", instant);
    }

    [Fact]
    public async Task PushAbortedWhileCopying_EndsCancelled_RemovesItsTarget_KeepsTheCheckpointAndTheDisk()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("a", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var image = test.ImagePath("a", vda);
        await Guest.RunAsync(socket, "vda", "write -P 0x41 0 1M", "write -P 0x42 8M 2M");
        var instant = await CaptureAsync(test, image, "i.raw");

        // Every write into the target waits at the gate, so the abort lands while the copy runs.
        GatedImage? gate = null;
        domain.BackupStoreWrapper = store => gate = new GatedImage(store);
        var target = test.Directory.File("full.qcow2");
        var backup = await domain.BeginBackupAsync(Push(target, incremental: null), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await gate!.FirstArrival.WaitAsync(JobTimeout, Ct);

        var running = backup.Job.Info;
        Assert.Equal(BackupJobPhase.Running, running.Phase);
        // The whole disk, as QEMU's full backup job counts it; the holes count as processed.
        Assert.Equal(16 << 20, running.BytesTotal);
        Assert.True(running.BytesProcessed < running.BytesTotal);
        Assert.True(File.Exists(target));

        domain.AbortBackup();
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        // An aborted push ends CANCELED, not COMPLETED as an aborted pull does, and the target
        // libvirt created is deleted (spec §6.10, §6.11; qemuBackupJobTerminate).
        Assert.Equal(BackupJobPhase.Cancelled, info.Phase);
        Assert.False(info.Success);
        Assert.Null(info.ErrorMessage);
        Assert.Equal(BackupDiskState.Cancelled, backup.Job.Definition.Disks.Single(d => d.Name == "vda").State);
        Assert.Equal(0, gate.Written);
        Assert.False(File.Exists(target));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "a.files")));
        Assert.Null(domain.Backup);
        Assert.Null(domain.Running.DiskByTarget("vda")!.Guest.Interceptor);
        var completed = domain.TakeCompletedBackupInfo(keep: false);
        Assert.Equal(BackupJobPhase.Cancelled, completed!.Phase);
        Assert.False(completed.Success);

        // The checkpoint was finalized when the job began (spec §6.7 step 14); the abort does
        // not roll it back.
        Assert.Equal(["c1"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Equal("c1", domain.Checkpoints.CurrentName);

        // The guest's data is untouched, and the next job begins and copies the same content.
        await Guest.RunAsync(socket, "vda", "read -P 0x41 0 1M", "read -P 0x42 8M 2M");
        domain.BackupStoreWrapper = null;
        var again = test.Directory.File("again.qcow2");
        var second = await domain.BeginBackupAsync(Push(again, incremental: null), null, cancellationToken: Ct);
        Assert.Equal(BackupJobPhase.Completed, (await second.Completion.WaitAsync(JobTimeout, Ct)).Phase);
        await Documents.AssertCleanAsync(again);
        await Documents.AssertSameContentAsync(again, "qcow2", instant);

        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", image);
        await Documents.AssertSameContentAsync(image, "qcow2", instant);
        Assert.Equal(["c1"], await ImageBitmaps.NamesAsync(image));
    }

    /// <summary>
    /// A begin while a pull runs waits for it (libvirt's wait for the domain's async job,
    /// spec §6.7 step 2); the pull aborted meanwhile, the waiting begin starts its own job.
    /// Abort and checkpoints are not held up by the waiting begin.
    /// </summary>
    [Fact]
    public async Task BeginWhileAPullRuns_StartsOnceThePullHasEnded()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("w", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var pull = $"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{test.Directory.File("pull.sock")}'/>
              <disks><disk name='vda' type='file'><scratch file='{test.Directory.File("scratch.qcow2")}'/></disk></disks>
            </domainbackup>
            """;
        var first = await domain.BeginBackupAsync(pull, null, cancellationToken: Ct);

        var target = test.Directory.File("next.qcow2");
        var waiting = domain.BeginBackupAsync(Push(target, incremental: null), null, cancellationToken: Ct);
        await Task.Delay(200, Ct);
        Assert.False(waiting.IsCompleted);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.Same(first, domain.Backup);

        domain.AbortBackup();
        var second = await waiting.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, (await first.Completion).Phase);
        Assert.NotSame(first, second);
        Assert.Equal(BackupJobPhase.Completed, (await second.Completion.WaitAsync(JobTimeout, Ct)).Phase);
        await Documents.AssertCleanAsync(target);

        // Once shut off, an abort names the domain's state before any job (qemuDomainAbortJobFlags).
        await domain.DestroyAsync(Ct);
        Assert.Equal("Requested operation is not valid: domain is not running", Assert.Throws<EngineException>(domain.AbortBackup).Message);
    }

    /// <summary>A push backup of vda into <paramref name="target"/>, full or incremental since <paramref name="incremental"/>.</summary>
    internal static string Push(string target, string? incremental, string format = "qcow2")
        => $"""
            <domainbackup mode='push'>{(incremental is null ? "" : $"<incremental>{incremental}</incremental>")}
              <disks><disk name='vda' type='file'><target file='{target}'/><driver type='{format}'/></disk></disks>
            </domainbackup>
            """;

    /// <summary>A raw copy of a qcow2 image as it is now (read without its lock, while a domain runs).</summary>
    internal static async Task<string> CaptureAsync(TestHost test, string image, string name)
    {
        var copy = test.Directory.File(name);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image, copy);
        return copy;
    }
}
