using System.Globalization;
using System.Net.Sockets;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Formats;
using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>Jobs libvirt refuses to begin: its error code and text, and nothing left on disk.</summary>
public sealed class BackupErrorTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StoreExists_WithoutReuseExternal_IsRefusedAndLeftAlone()
    {
        using var dir = new TempDirectory("err-exists");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var target = dir.File("backup.qcow2");
        await File.WriteAllTextAsync(target, "mine", Token);

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(Documents.Push(target, StorageFormat.Qcow2), [disk.Source()], new BackupJobOptions(), Token));

        Assert.Equal(BackupErrorReason.StoreExists, e.Reason);
        Assert.Equal(LibvirtErrorCode.InvalidArg, e.Code);
        Assert.Equal($"invalid argument: store '{target}' for backup of 'vda' exists", e.Message);
        Assert.Equal("mine", await File.ReadAllTextAsync(target, Token));
    }

    [Fact]
    public async Task PullSocketPath_NamingTheDiskImage_IsRefusedAndTheImageIsLeftAlone()
    {
        // QEMU would unlink the path before binding; a root daemon doing so deletes the disk.
        using var dir = new TempDirectory("err-sock-image");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var before = await File.ReadAllBytesAsync(disk.Path, Token);
        var scratch = dir.File("scratch.qcow2");

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(Documents.Pull(disk.Path, scratch), [disk.Source()], new BackupJobOptions(), Token));

        Assert.Equal(BackupErrorReason.ServerFailed, e.Reason);
        Assert.Equal($"operation failed: cannot start the backup NBD server on unix socket '{disk.Path}': '{disk.Path}' exists and is not a socket: refusing to replace it with one", e.Message);
        Assert.Equal(before, await File.ReadAllBytesAsync(disk.Path, Token));
        Assert.False(File.Exists(scratch));
        await Peer.RunCheckedAsync("qemu-img", "check", "-U", disk.Path);
    }

    [Fact]
    public async Task PullSocketPath_OfAListeningServer_IsRefused_AndAStaleOneIsReplaced()
    {
        using var dir = new TempDirectory("err-sock-live");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var path = dir.File("backup.sock");
        using var live = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        live.Bind(new UnixDomainSocketEndPoint(path));
        live.Listen(1);

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(Documents.Pull(path, dir.File("s1.qcow2")), [disk.Source()], new BackupJobOptions(), Token));

        Assert.Equal($"operation failed: cannot start the backup NBD server on unix socket '{path}': '{path}' is the socket of a server that is still listening", e.Message);

        // A socket file nobody listens on (a server killed before it could remove it): the
        // job takes the path, and removes its socket at the end.
        // (.NET's Socket removes its file when closed; Python's does not.)
        live.Close();
        await Peer.RunCheckedAsync("/usr/bin/python3", "-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{path}')");
        Assert.True(File.Exists(path));
        await using (var job = await BackupJob.PrepareAsync(Documents.Pull(path, dir.File("s2.qcow2")), [disk.Source()], new BackupJobOptions(), Token))
        {
            disk.Guest.Interceptor = job.InterceptorFor("vda");
            job.Start();
            var size = await Peer.RunCheckedAsync("nbdinfo", "--size", $"nbd+unix:///vda?socket={path}");
            Assert.Equal(RunningDisk.Size.ToString(CultureInfo.InvariantCulture), size.Trim());
            await job.AbortAsync().WaitAsync(TimeSpan.FromMinutes(1), Token);
            disk.Guest.Interceptor = null;
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task ReuseExternal_ExistingRawTarget_IsOverwrittenAndKept()
    {
        using var dir = new TempDirectory("reuse");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var target = dir.File("backup.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", target, "32M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 32M", target);
        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        await using var job = await BackupJob.PrepareAsync(Documents.Push(target, StorageFormat.Raw), [disk.Source()], new BackupJobOptions { ReuseExternal = true }, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        job.Start();

        var info = await job.Completion.WaitAsync(TimeSpan.FromMinutes(2), Token);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        await Documents.AssertSameContentAsync(target, "raw", instant);
    }

    [Fact]
    public async Task NoDiskBackedUp_IsRefused()
    {
        using var dir = new TempDirectory("err-none");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var backup = new BackupDefinition(BackupMode.Push, null, null, [BackupDisk.Excluded("vda")]);

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(backup, [disk.Source()], new BackupJobOptions(), Token));

        Assert.Equal("unsupported configuration: no disks selected for backup", e.Message);
        Assert.Equal(LibvirtErrorCode.ConfigUnsupported, e.Code);
    }

    [Fact]
    public async Task TlsWithoutDirectory_IsRefused_AndTheScratchAlreadyCreatedIsRemoved()
    {
        using var dir = new TempDirectory("err-tls");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var scratch = dir.File("scratch.qcow2");
        var announced = new List<string>();
        var options = new BackupJobOptions { OnCreatingFile = (path, _) => { announced.Add(path); return ValueTask.CompletedTask; } };

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(Documents.Pull(dir.File("backup.sock"), scratch, tls: true), [disk.Source()], options, Token));

        Assert.Equal("Requested operation is not valid: backup TLS directory not configured", e.Message);
        Assert.Equal([scratch], announced);
        Assert.False(File.Exists(scratch));
    }

    [Fact]
    public async Task DiskWithoutSource_IsNoDiskNamed()
    {
        using var dir = new TempDirectory("err-nodisk");
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        var target = dir.File("backup.qcow2");
        var backup = Documents.Push(target, StorageFormat.Qcow2) is var b ? b with { Disks = [b.Disks[0] with { Name = "vdb" }] } : null!;

        var e = await Assert.ThrowsAsync<BackupJobException>(() => BackupJob.PrepareAsync(backup, [disk.Source()], new BackupJobOptions(), Token));

        Assert.Equal("invalid argument: no disk named 'vdb'", e.Message);
        Assert.False(File.Exists(target));
    }
}
