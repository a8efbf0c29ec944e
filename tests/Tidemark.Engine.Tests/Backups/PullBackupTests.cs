using System.Text.Json;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Pull backups read by libnbd's tools while qemu-io keeps writing the same clusters: the export
/// is the disk at the job's instant (nbdcopy, then qemu-img compare), its base:allocation is the
/// instant's, and an incremental export's <c>qemu:dirty-bitmap:backup-vda</c> is the bitmap.
/// </summary>
public sealed class PullBackupTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(DiskKind.Qcow2, false)]
    [InlineData(DiskKind.Qcow2, true)]
    [InlineData(DiskKind.Raw, false)]
    [InlineData(DiskKind.Raw, true)]
    [InlineData(DiskKind.Qcow2WithBacking, false)]
    [InlineData(DiskKind.Qcow2WithBacking, true)]
    public async Task Export_GuestWritingThroughout_IsTheDiskAtTheInstant(DiskKind kind, bool incremental)
    {
        using var dir = new TempDirectory("pull");
        await using var disk = await RunningDisk.StartAsync(dir, kind);
        await using var writer = GuestWriter.Start(disk.Uri);
        await writer.WaitRoundsAsync(1);
        if (incremental)
        {
            await disk.Guest.PauseAsync();
            disk.Guest.ResetDirty();
            disk.Guest.Resume();
            await writer.WaitRoundsAsync(1);
        }

        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        var bitmap = incremental ? disk.Guest.Dirty.Clone() : null;
        bitmap?.SetRange(28 << 20, 65536);
        var socket = dir.File("backup.sock");
        var scratch = dir.File("scratch.qcow2");
        await using var job = await BackupJob.PrepareAsync(Documents.Pull(socket, scratch, incremental ? "c1" : null), [disk.Source(bitmap)], new BackupJobOptions(), Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        writer.WriteLateHole = true;
        job.Start();
        await writer.WaitRoundsAsync(1);
        Assert.True(File.Exists(scratch));
        Assert.True(job.Info.ScratchBytesInUse > 0, "guest writes copied old content into the scratch");
        Assert.Equal(RunningDisk.Size, job.Info.ScratchBytesTotal);

        var uri = $"nbd+unix:///vda?socket={socket}";
        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", uri, copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);

        // base:allocation is the instant's: the hole the guest filled afterwards is still one.
        var allocation = await MapAsync(uri, "base:allocation");
        Assert.Contains(allocation, e => (e.Type & 1) != 0 && e.Offset <= GuestWriter.LateHole && e.Offset + e.Length >= GuestWriter.LateHole + 65536);
        Assert.Contains(allocation, e => e.Type == 0 && e.Offset == 0);

        var contexts = await Peer.RunCheckedAsync("nbdinfo", "--list", "--json", uri);
        Assert.Equal(incremental, contexts.Contains("qemu:dirty-bitmap:backup-vda", StringComparison.Ordinal));
        if (bitmap is not null)
        {
            var map = (await MapAsync(uri, "qemu:dirty-bitmap:backup-vda")).Select(e => new DirtyRun(e.Offset, e.Length, e.Type == 1));
            var expected = bitmap.EnumerateExtents(0, bitmap.Size).Select(e => new DirtyRun(e.Offset, e.Length, e.Dirty));
            Assert.Equal(QemuNbdExport.Coalesce(expected), QemuNbdExport.Coalesce(map));
        }

        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);
        await writer.StopAsync();
        disk.Guest.Interceptor = null;

        // An aborted pull counts as completed (spec §6.11); its scratch is always removed (§6.9).
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.True(info.Success);
        Assert.False(File.Exists(scratch));
        Assert.False(File.Exists(socket));
    }

    [Theory]
    [InlineData(DiskKind.Qcow2)]
    [InlineData(DiskKind.Raw)]
    public async Task SmallGuestWrites_CopyAsideOnlyTheBlocksTheyOverwrite(DiskKind kind)
    {
        using var dir = new TempDirectory("pull-small");
        await using var disk = await RunningDisk.StartAsync(dir, kind);
        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        var socket = dir.File("backup.sock");
        await using var job = await BackupJob.PrepareAsync(Documents.Pull(socket, dir.File("scratch.qcow2"), null), [disk.Source()], new BackupJobOptions(), Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        job.Start();

        // Three 4 KiB writes into data the disk held at the instant (two in one 64 KiB cluster),
        // one 512-byte write, and one write into a hole, which has nothing to copy.
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x71 4k 4k", "-c", "write -P 0x72 12k 4k", "-c", "write -P 0x73 8M 4k", "-c", "write -P 0x74 1048832 512", "-c", "write -P 0x75 16M 4k", disk.Uri);
        await disk.Guest.PauseAsync();
        Assert.Equal(4 * 4096, job.Info.ScratchBytesInUse);
        disk.Guest.Resume();

        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///vda?socket={socket}", copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);
        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
    }

    [Fact]
    public async Task TlsOverTcp_ClientWithTheCaReadsTheInstant_PlainClientIsRefused()
    {
        using var dir = new TempDirectory("pull-tls");
        var pki = await X509Credentials.CreateAsync(dir);
        await using var disk = await RunningDisk.StartAsync(dir, DiskKind.Qcow2);
        await disk.Guest.PauseAsync();
        var instant = await disk.CaptureAsync(dir, "instant.raw");
        var port = (ushort)LoopbackPort.Free();
        var backup = BackupDefaults.Apply(new BackupDefinition(BackupMode.Pull, null, new BackupServer(ServerTransport.Tcp, Name: "localhost", Port: port, Tls: true), [new BackupDisk("vda", Backup: true, Mode: BackupDiskMode.Full, Store: BackupStore.At(StoreType.File, dir.File("scratch.qcow2")))]));
        await using var job = await BackupJob.PrepareAsync(backup, [disk.Source()], new BackupJobOptions { TlsDirectory = pki.ServerDirectory }, Token);
        disk.Guest.Interceptor = job.InterceptorFor("vda");
        disk.Guest.Resume();
        job.Start();
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 0 1M", disk.Uri);

        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", $"nbds://localhost:{port}/vda?tls-certificates={pki.ClientDirectory}", copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);
        var plain = await Peer.RunAsync("nbdinfo", [$"nbd://localhost:{port}/vda"]);
        Assert.NotEqual(0, plain.ExitCode);

        var info = await job.AbortAsync().WaitAsync(JobTimeout, Token);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
    }

    internal readonly record struct MapEntry(long Offset, long Length, int Type);

    internal static async Task<List<MapEntry>> MapAsync(string uri, string context)
    {
        var json = await Peer.RunCheckedAsync("nbdinfo", "--json", $"--map={context}", uri);
        return [.. JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => new MapEntry(
            e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetInt32()))];
    }
}
