using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The paused state (virDomainSuspend / virDomainResume) with qemu-io as the guest: a request
/// issued while paused completes only after the resume, requests in flight complete before the
/// suspend returns, and checkpoints and backup jobs go on while paused. Every "not yet" is
/// asserted only once the request has been seen at the gate; every wait is bounded, so a hang
/// fails the test.
/// </summary>
public sealed class PauseTests
{
    private const long Size = 16 << 20;
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(1);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RequestsIssuedWhilePaused_CompleteOnlyAfterTheResume()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("s", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        var gate = domain.Running.Gate;
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 64k");

        Assert.True(await domain.SuspendAsync(Ct));
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.True(domain.IsActive);

        // Suspending a paused domain changes nothing (qemuDomainSuspend skips the stop).
        Assert.False(await domain.SuspendAsync(Ct));
        Assert.Equal(DomainState.Paused, domain.State);

        // A write and a read, each from its own guest connection: both wait at the gate.
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x62 1M 64k", Guest.Uri(socket, "vda")], timeout: Bound);
        var read = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0x61 0 64k", Guest.Uri(socket, "vda")], timeout: Bound);
        await UntilAsync(() => gate.Waiting == 2, "both requests wait at the gate");
        Assert.False(write.IsCompleted);
        Assert.False(read.IsCompleted);
        Assert.Equal(0, gate.InFlight);

        await domain.ResumeAsync(Ct);
        Assert.Equal(DomainState.Running, domain.State);
        var written = await write;
        var readBack = await read;
        Assert.True(written.ExitCode == 0 && !written.Stdout.Contains("failed", StringComparison.Ordinal), written.Stdout + written.Stderr);
        Assert.True(readBack.ExitCode == 0 && !readBack.Stdout.Contains("failed", StringComparison.Ordinal), readBack.Stdout + readBack.Stderr);
        await Guest.RunAsync(socket, "vda", "read -P 0x62 1M 64k");

        // qemuDomainResume refuses a domain that runs; both refuse a domain shut off.
        var again = await Assert.ThrowsAsync<EngineException>(() => domain.ResumeAsync(Ct));
        Assert.Equal("Requested operation is not valid: domain is already running", again.Message);
        Assert.Equal(Formats.LibvirtErrorCode.OperationInvalid, again.Code);
        await domain.DestroyAsync(Ct);
        Assert.Equal("Requested operation is not valid: domain is not running", (await Assert.ThrowsAsync<EngineException>(() => domain.SuspendAsync(Ct))).Message);
        Assert.Equal("Requested operation is not valid: domain is not running", (await Assert.ThrowsAsync<EngineException>(() => domain.ResumeAsync(Ct))).Message);
        Assert.Equal(DomainState.ShutOff, domain.State);
    }

    [Fact]
    public async Task Suspend_ReturnsOnlyOnceTheRequestsInFlightHaveCompleted()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("d", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var running = domain.Running!;
        var live = running.DiskByTarget("vda")!.LiveImage;

        // The instant barrier held closed keeps a write in flight: through the gate, not done.
        var closure = await running.Barrier.CloseAsync(Ct);
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x71 2M 64k", Guest.Uri(running.SocketPath, "vda")], timeout: Bound);
        await UntilAsync(() => running.Gate.InFlight == 1, "the write is in flight");

        var suspend = domain.SuspendAsync(Ct);
        await UntilAsync(() => running.Gate.IsShut, "the suspend has shut the gate");
        Assert.False(suspend.IsCompleted);
        Assert.Equal(DomainState.Running, domain.State);

        // The write completes, then the suspend: its bytes are in the image when it returns.
        closure.Dispose();
        Assert.True(await suspend.WaitAsync(Bound, Ct));
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.Equal(0, running.Gate.InFlight);
        var bytes = new byte[64 << 10];
        await live.ReadAsync(2 << 20, bytes, Ct);
        Assert.All(bytes, b => Assert.Equal(0x71, b));

        // qemu-io flushes as it closes: that request waits for the resume.
        await domain.ResumeAsync(Ct);
        var result = await write;
        Assert.True(result.ExitCode == 0, result.Stderr);
        await domain.DestroyAsync(Ct);
    }

    [Fact]
    public async Task CheckpointCreatedWhilePaused_StartsItsBitmapAtThatInstant()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("c", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 64k");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(socket, "vda", "write -P 0x62 1M 64k");

        // A write issued while paused waits; the checkpoint does not wait for it (nor for the resume).
        await domain.SuspendAsync(Ct);
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x63 2M 64k", Guest.Uri(socket, "vda")], timeout: Bound);
        await UntilAsync(() => domain.Running.Gate.Waiting == 1, "the write waits at the gate");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal(["c1", "c2"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.False(write.IsCompleted);
        Assert.Equal(DomainState.Paused, domain.State);

        // Deleting a checkpoint while paused works as well (c3 merges into nothing: a leaf).
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c3</name></domaincheckpoint>", cancellationToken: Ct).WaitAsync(Bound, Ct);
        await domain.Checkpoints.DeleteAsync("c3", cancellationToken: Ct).WaitAsync(Bound, Ct);

        await domain.ResumeAsync(Ct);
        Assert.Equal(0, (await write).ExitCode);
        await Guest.RunAsync(socket, "vda", "write -P 0x64 3M 64k");
        await domain.DestroyAsync(Ct);

        // The write held at the gate lands after c2's instant: in c1's and c2's bitmaps alike.
        var image = test.ImagePath("c", vda);
        await Peer.RunCheckedAsync("qemu-img", "check", image);
        await using var export = await QemuNbdExport.StartAsync(image, test.Directory.File("q.sock"), "c1", "c2");
        Assert.Equal(QemuNbdExport.Covering(Size, (1 << 20, 64 << 10), (2 << 20, 64 << 10), (3 << 20, 64 << 10)), await export.DirtyMapAsync("c1"));
        Assert.Equal(QemuNbdExport.Covering(Size, (2 << 20, 64 << 10), (3 << 20, 64 << 10)), await export.DirtyMapAsync("c2"));
    }

    [Fact]
    public async Task BackupJobs_RunWhilePaused_APullExportIsServed_APushCompletes()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("b", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 1M", "write -P 0x62 8M 64k");
        await domain.SuspendAsync(Ct);

        // A guest read waits at the gate meanwhile, which the job's export does not pass.
        var guestRead = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0x61 0 64k", Guest.Uri(socket, "vda")], timeout: Bound);
        await UntilAsync(() => domain.Running.Gate.Waiting == 1, "the guest read waits at the gate");

        var pullSocket = test.Directory.File("pull.sock");
        var pull = $"""
            <domainbackup mode='pull'>
              <server transport='unix' socket='{pullSocket}'/>
              <disks><disk name='vda' type='file'><scratch file='{test.Directory.File("scratch.qcow2")}'/></disk></disks>
            </domainbackup>
            """;
        var job = await domain.BeginBackupAsync(pull, "<domaincheckpoint><name>p1</name></domaincheckpoint>", cancellationToken: Ct).WaitAsync(Bound, Ct);
        var read = await Peer.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x61 0 1M", "-c", "read -P 0x62 8M 64k", "-c", "read -P 0 9M 64k", $"nbd+unix:///vda?socket={pullSocket}"], timeout: Bound);
        Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("failed", StringComparison.Ordinal), read.Stdout + read.Stderr);
        Assert.Equal(BackupJobPhase.Running, domain.Backup!.Job.Info.Phase);
        domain.AbortBackup();
        Assert.Equal(BackupJobPhase.Completed, (await job.Completion.WaitAsync(Bound, Ct)).Phase);

        var target = test.Directory.File("full.qcow2");
        job = await domain.BeginBackupAsync(DomainBackupTests.Push(target, incremental: null), null, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal(BackupJobPhase.Completed, (await job.Completion.WaitAsync(Bound, Ct)).Phase);
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.False(guestRead.IsCompleted);
        await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x61 0 1M", "-c", "read -P 0x62 8M 64k", target);

        await domain.ResumeAsync(Ct);
        Assert.Equal(0, (await guestRead).ExitCode);
        await domain.DestroyAsync(Ct);
    }

    [Fact]
    public async Task PausedDomain_WithARequestWaiting_IsDestroyedWithoutHanging_ButNotShutDown()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("x", Size, vda);
        await domain.StartAsync(Ct);
        var running = domain.Running!;
        await domain.SuspendAsync(Ct);
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x7e 4M 64k", Guest.Uri(running.SocketPath, "vda")], timeout: Bound);
        await UntilAsync(() => running.Gate.Waiting == 1, "the write waits at the gate");

        // qemuDomainShutdownFlagsMonitor: only a running guest can be asked to power off.
        var shutdown = await Assert.ThrowsAsync<EngineException>(() => domain.ShutdownAsync(Ct));
        Assert.Equal("Requested operation is not valid: domain is not running", shutdown.Message);
        Assert.Equal(DomainState.Paused, domain.State);

        await domain.DestroyAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.Equal(0, running.Gate.Waiting);

        // The guest's write ended with its connection, unanswered; it never reached the image.
        var result = await write;
        Assert.True(result.ExitCode != 0 || result.Stdout.Contains("failed", StringComparison.Ordinal), result.Stdout + result.Stderr);
        await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("x", vda));
        await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0 4M 64k", test.ImagePath("x", vda));
    }

    [Fact]
    public async Task PausedDomain_StopsWithItsHost_AndStartsRunning()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("h", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var running = domain.Running!;
        await domain.SuspendAsync(Ct);
        var read = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 64k", Guest.Uri(running.SocketPath, "vda")], timeout: Bound);
        await UntilAsync(() => running.Gate.Waiting == 1, "the read waits at the gate");

        // A restart stops every domain, paused or not; the next start runs, not paused.
        await test.RestartAsync().WaitAsync(Bound, Ct);
        await read;
        var again = test.Host.LookupByName("h");
        Assert.Equal(DomainState.ShutOff, again.State);
        await again.StartAsync(Ct);
        Assert.Equal(DomainState.Running, again.State);
        await Guest.RunAsync(again.Running!.SocketPath, "vda", "write -P 0x11 0 64k");
        await again.DestroyAsync(Ct);
    }

    [Fact]
    public async Task DomainStartedPaused_HoldsTheFirstGuestWrite_UntilTheResume()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("sp", Size, vda);
        await domain.StartAsync(DomainStartFlags.Paused, Ct);
        var running = domain.Running!;
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.True(running.Gate.IsShut);

        // The connection is accepted (the handshake needs no gate); the write waits at it.
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 1M 64k", Guest.Uri(running.SocketPath, "vda")], timeout: Bound);
        await UntilAsync(() => running.Gate.Waiting == 1, "the write waits at the gate");
        Assert.False(write.IsCompleted);
        Assert.Equal(0, running.Gate.InFlight);

        // A checkpoint before the guest ever ran: the held write lands after its instant.
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name></domaincheckpoint>", cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.False(write.IsCompleted);

        await domain.ResumeAsync(Ct);
        Assert.Equal(DomainState.Running, domain.State);
        var written = await write;
        Assert.True(written.ExitCode == 0 && !written.Stdout.Contains("failed", StringComparison.Ordinal), written.Stdout + written.Stderr);
        await Guest.RunAsync(running.SocketPath, "vda", "read -P 0x5a 1M 64k");
        await domain.DestroyAsync(Ct);

        await using var export = await QemuNbdExport.StartAsync(test.ImagePath("sp", vda), test.Directory.File("q.sock"), "k1");
        Assert.Equal(QemuNbdExport.Covering(Size, (1 << 20, 64 << 10)), await export.DirtyMapAsync("k1"));
    }

    [Fact]
    public async Task DomainCreatedPaused_HoldsAGuestRead_UntilTheResume()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", test.ImagePath("cp", vda), Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var definition = Formats.Domains.DomainParser.Parse(test.DomainXml("cp", vda), cancellationToken: Ct);
        var domain = await test.Host.CreateAsync(definition, DomainStartFlags.Paused, Ct);
        var running = domain.Running!;
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.False(domain.IsPersistent);

        var read = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0 0 64k", Guest.Uri(running.SocketPath, "vda")], timeout: Bound);
        await UntilAsync(() => running.Gate.Waiting == 1, "the read waits at the gate");
        Assert.False(read.IsCompleted);

        await domain.ResumeAsync(Ct);
        var result = await read;
        Assert.True(result.ExitCode == 0 && !result.Stdout.Contains("failed", StringComparison.Ordinal), result.Stdout + result.Stderr);
        await domain.DestroyAsync(Ct);
        Assert.Empty(test.Host.ListDomains());
    }

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"not seen within {Bound}: {what}");
            await Task.Delay(10, Ct);
        }
    }
}
