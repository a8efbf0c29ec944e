using System.Text.Json;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Formats.Checkpoints;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Backups begun by a running domain with the engine's own checkpoint bitmaps (spec §6.7–§6.11):
/// the disk is a qcow2 overlay over a qcow2 base whose checkpoint c1 began in the base (spec
/// §6.8: the dirty set is c1 merged across the chain). qemu-io writes through the domain's
/// export, also into the clusters the job still has to read; qemu-img map and compare, nbdinfo
/// and nbdcopy judge the targets and the pull exports.
/// </summary>
public sealed class DomainBackupChainTests
{
    private const long Size = 8 << 20;
    private const long Cluster = 64 << 10;
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Dirty since c1: written in the base before the overlay existed (1M, 3M..3M+128k), then in
    /// the overlay (3M again, 6M, and a 4 KiB write that dirties its whole cluster at 1536k).
    /// </summary>
    private static readonly (long Offset, long Length)[] SinceC1 = [(1 << 20, Cluster), (1536 << 10, Cluster), (3 << 20, 2 * Cluster), (6 << 20, Cluster)];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PushIncremental_FromACheckpointBegunInTheBackingLayer_HoldsExactlyTheClustersWrittenSince()
    {
        await using var test = await TestHost.CreateAsync();
        var chain = await ChainAsync(test);

        // --size counts c1 across both layers (spec §6.5, §6.8).
        Assert.Contains($"bitmap='c1' size='{Bytes(SinceC1)}'", await chain.Domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size, Ct));

        // Incremental from c1, c2 in the same instant; the guest rewrites the dirty clusters
        // (and others) as soon as the job runs: copy-before-write keeps the instant's bytes.
        var instant2 = await DomainBackupTests.CaptureAsync(test, chain.Top, "i2.raw");
        var inc1 = test.Directory.File("inc1.qcow2");
        var backup = await chain.Domain.BeginBackupAsync(DomainBackupTests.Push(inc1, "c1", "qcow2"), "<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(chain.Socket, "vda", "write -P 0x41 1M 64k", "write -P 0x42 3M 128k", "write -P 0x43 0 64k", "write -P 0x44 1540k 4k");
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Equal(Bytes(SinceC1), info.BytesTotal);
        Assert.Equal(info.BytesTotal, info.BytesProcessed);
        Assert.Equal("c1", await chain.Domain.Checkpoints.GetParentAsync("c2", Ct));
        await Documents.AssertCleanAsync(inc1);

        // The header names the live disk's top image, the overlay (spec §6.10).
        var header = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", inc1)).RootElement;
        Assert.Equal(chain.Top, header.GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", header.GetProperty("backing-filename-format").GetString());

        // Rebased onto the full backup taken with c1, as a user restores a chain: its own
        // clusters are exactly those dirty since c1 in either layer, and it is the disk at c2.
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-b", chain.Full, "-F", "qcow2", inc1);
        Assert.Equal(Runs(SinceC1), await OwnClustersAsync(inc1));
        await Documents.AssertSameContentAsync(inc1, "qcow2", instant2);

        // c2 lives in the overlay only; the next incremental holds what the guest wrote during
        // the first job and after it, and the whole chain is the disk at c3.
        await Guest.RunAsync(chain.Socket, "vda", "write -P 0x51 2M 64k");
        var instant3 = await DomainBackupTests.CaptureAsync(test, chain.Top, "i3.raw");
        var inc2 = test.Directory.File("inc2.qcow2");
        backup = await chain.Domain.BeginBackupAsync(DomainBackupTests.Push(inc2, "c2", "qcow2"), "<domaincheckpoint><name>c3</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(chain.Socket, "vda", "write -P 0x61 0 4M");
        info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-b", inc1, "-F", "qcow2", inc2);
        Assert.Equal(Runs((0, Cluster), (1 << 20, Cluster), (1536 << 10, Cluster), (2 << 20, Cluster), (3 << 20, 2 * Cluster)), await OwnClustersAsync(inc2));
        await Documents.AssertSameContentAsync(inc2, "qcow2", instant3);

        await chain.Domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", chain.Top);
        await Peer.RunCheckedAsync("qemu-img", "check", chain.Base);
    }

    [Fact]
    public async Task PullIncremental_OverTheChain_DirtyBitmapContextIsTheMergedBitmap_ExportStaysTheInstant()
    {
        await using var test = await TestHost.CreateAsync();
        var chain = await ChainAsync(test);
        var instant = await DomainBackupTests.CaptureAsync(test, chain.Top, "i.raw");
        var socket = test.Directory.File("pull.sock");
        var scratch = test.Directory.File("scratch.qcow2");
        var backup = await chain.Domain.BeginBackupAsync($"""
            <domainbackup mode='pull'>
              <incremental>c1</incremental>
              <server transport='unix' socket='{socket}'/>
              <disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks>
            </domainbackup>
            """, null, cancellationToken: Ct);
        var uri = Guest.Uri(socket, "vda");

        // qemu:dirty-bitmap:backup-vda is c1 merged across the overlay and the base (spec §6.8, §6.9).
        var expected = Runs(SinceC1);
        Assert.Equal(expected, await DirtyMapAsync(uri));

        // The guest rewrites dirty and clean clusters: each old content goes to the scratch first.
        await Guest.RunAsync(chain.Socket, "vda", "write -P 0x71 1M 64k", "write -P 0x72 3M 128k", "write -P 0x73 0 2M", "write -P 0x74 6M 4k");
        Assert.True(chain.Domain.Backup!.Job.Info.ScratchBytesInUse > 0, "guest writes copied the instant's clusters into the scratch");
        Assert.Equal(expected, await DirtyMapAsync(uri));

        // And keeps writing the same clusters while nbdcopy reads the export.
        var copy = test.Directory.File("copy.raw");
        var writing = Guest.RunAsync(chain.Socket, "vda", "write -P 0x75 0 4M", "write -P 0x76 1M 64k", "write -P 0x77 3M 1M", "write -P 0x78 6M 2M");
        await Peer.RunCheckedAsync("nbdcopy", uri, copy);
        await writing;
        await Documents.AssertSameContentAsync(copy, "raw", instant);

        chain.Domain.AbortBackup();
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);
        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.False(File.Exists(scratch));

        // The guest's writes all reached the disk.
        await Guest.RunAsync(chain.Socket, "vda", "read -P 0x75 0 1M", "read -P 0x76 1M 64k", "read -P 0x77 3M 1M", "read -P 0x78 6M 2M");
    }

    [Fact]
    public async Task PushIncrementalIntoRaw_DirtyClustersAtTheirOffsets_HolesElsewhere()
    {
        await using var test = await TestHost.CreateAsync();
        var chain = await ChainAsync(test);
        var instant = await DomainBackupTests.CaptureAsync(test, chain.Top, "i.raw");
        var target = test.Directory.File("inc.raw");
        var backup = await chain.Domain.BeginBackupAsync(DomainBackupTests.Push(target, "c1", "raw"), null, cancellationToken: Ct);
        await Guest.RunAsync(chain.Socket, "vda", "write -P 0x81 1M 2M", "write -P 0x82 6M 64k");
        var info = await backup.Completion.WaitAsync(JobTimeout, Ct);

        Assert.Equal(BackupJobPhase.Completed, info.Phase);
        Assert.Equal(Bytes(SinceC1), info.BytesTotal);
        Assert.Equal(info.BytesTotal, info.BytesProcessed);

        // Spec §6.10: the dirty clusters at their offsets, holes everywhere else.
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "-f", "raw", "--output=json", target)).RootElement.EnumerateArray()
            .Select(e => new DirtyRun(e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean()));
        Assert.Equal(Runs(SinceC1), QemuNbdExport.Coalesce(map));

        var written = await File.ReadAllBytesAsync(target, Ct);
        var disk = await File.ReadAllBytesAsync(instant, Ct);
        Assert.Equal(Size, written.LongLength);
        for (long offset = 0; offset < Size; offset += Cluster)
        {
            var dirty = SinceC1.Any(r => offset >= r.Offset && offset < r.Offset + r.Length);
            var actual = written.AsSpan((int)offset, (int)Cluster);
            if (dirty)
            {
                Assert.True(actual.SequenceEqual(disk.AsSpan((int)offset, (int)Cluster)), $"cluster at {offset} holds the instant's bytes");
            }
            else
            {
                Assert.True(!actual.ContainsAnyExcept((byte)0), $"cluster at {offset} is a hole");
            }
        }
    }

    [Fact]
    public async Task PullOverPlainTcp_IsReadByNbdinfo_AndRefusesWrites()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("t", Size, vda);
        await domain.StartAsync(Ct);
        var image = test.ImagePath("t", vda);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x91 0 1M", "write -P 0x92 5M 64k");
        var instant = await DomainBackupTests.CaptureAsync(test, image, "i.raw");
        var port = (ushort)LoopbackPort.Free();
        var scratch = test.Directory.File("scratch.qcow2");
        var backup = await domain.BeginBackupAsync($"""
            <domainbackup mode='pull'>
              <server transport='tcp' name='127.0.0.1' port='{port}'/>
              <disks><disk name='vda' type='file'><scratch file='{scratch}'/></disk></disks>
            </domainbackup>
            """, null, cancellationToken: Ct);
        var uri = $"nbd://127.0.0.1:{port}/vda";

        var export = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", uri)).RootElement.GetProperty("exports")[0];
        Assert.Equal("vda", export.GetProperty("export-name").GetString());
        Assert.Equal(Size, export.GetProperty("export-size").GetInt64());
        Assert.True(export.GetProperty("is_read_only").GetBoolean());

        // A client that sends a write anyway (libnbd's strict mode off) gets EPERM, as from
        // qemu's read-only export (spec §6.9); qemu-io will not even open it read-write.
        var write = await Tidemark.Nbd.Tests.Support.Nbdsh.RunAsync(uri, "h.set_strict_mode(0)", "h.pwrite(b'\\xee' * 65536, 0)");
        Assert.NotEqual(0, write.ExitCode);
        Assert.Contains("nbd_pwrite: write: command failed: Operation not permitted", write.Stderr, StringComparison.Ordinal);
        var qemuIo = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0xee 0 64k", uri]);
        Assert.NotEqual(0, qemuIo.ExitCode);
        Assert.Contains("Permission denied", qemuIo.Stderr, StringComparison.Ordinal);

        // Neither the export nor the disk changed.
        var copy = test.Directory.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", uri, copy);
        await Documents.AssertSameContentAsync(copy, "raw", instant);
        await Documents.AssertSameContentAsync(image, "qcow2", instant);
        Assert.Equal(0L, domain.Backup!.Job.Info.ScratchBytesInUse);

        domain.AbortBackup();
        Assert.Equal(BackupJobPhase.Completed, (await backup.Completion.WaitAsync(JobTimeout, Ct)).Phase);
        Assert.False(File.Exists(scratch));
    }

    [Fact]
    public async Task UnknownDisk_IsNoDiskNamed_AndNothingIsCreated()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("u", Size, vda);
        await domain.StartAsync(Ct);
        var target = test.Directory.File("vdz.qcow2");
        var document = $"""
            <domainbackup mode='push'>
              <disks><disk name='vdz' type='file'><target file='{target}'/><driver type='qcow2'/></disk></disks>
            </domainbackup>
            """;

        // libvirt's virDomainBackupAlignDisks, before any job state exists (spec §3.3, §6.7 step 4).
        var e = await Assert.ThrowsAsync<DocumentException>(() => domain.BeginBackupAsync(document, "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.Equal("unsupported configuration: no disk named 'vdz'", e.Message);
        Assert.Equal(LibvirtErrorCode.ConfigUnsupported, e.Code);

        Assert.False(File.Exists(target));
        Assert.Null(domain.Backup);
        Assert.Null(domain.TakeCompletedBackupInfo(keep: true));
        Assert.Equal(0, domain.Checkpoints.Count);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "jobs", "u.files")));
        Assert.Null(domain.Running!.DiskByTarget("vda")!.Guest.Interceptor);
        await domain.DestroyAsync(Ct);
        Assert.DoesNotContain("bitmaps", await Peer.RunCheckedAsync("qemu-img", "info", test.ImagePath("u", vda)), StringComparison.Ordinal);
    }

    /// <summary>A running domain "k" whose disk vda is top.qcow2 over base.qcow2, c1 begun in the base, and a full backup taken with c1.</summary>
    private sealed record Chain(Domain Domain, string Socket, string Base, string Top, string Full);

    private static async Task<Chain> ChainAsync(TestHost test)
    {
        var basePath = test.Directory.File("base.qcow2");
        var top = test.Directory.File("top.qcow2");
        var domain = await test.DefineAsync("k", Size, new TestDisk("vda", Path: basePath));
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x11 0 2M", "write -P 0x12 3M 64k");

        // A full backup with c1 at its instant: the chain's first backup.
        var full = test.Directory.File("full.qcow2");
        var backup = await domain.BeginBackupAsync(DomainBackupTests.Push(full, null, "qcow2"), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal(BackupJobPhase.Completed, (await backup.Completion.WaitAsync(JobTimeout, Ct)).Phase);
        await Guest.RunAsync(domain.Running.SocketPath, "vda", "write -P 0x21 1M 64k", "write -P 0x22 3M 128k");
        await domain.DestroyAsync(Ct);

        // An external snapshot made by hand while the domain is shut off: the overlay gets an
        // empty recording bitmap c1, as libvirt's snapshot propagates every bitmap of the old top
        // (qemuSnapshotDiskBitmapsPropagate), so c1's chain is valid (spec §6.6) and the base's
        // c1 keeps the writes made before the overlay existed.
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", basePath, "-F", "qcow2", top);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", top, "c1");
        domain = await test.Host.DefineAsync(test.DomainXml("k", new TestDisk("vda", Path: top)), Ct);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;
        await Guest.RunAsync(socket, "vda", "write -P 0x31 3M 64k", "write -P 0x32 6M 64k", "write -P 0x33 1536k 4k");
        return new Chain(domain, socket, basePath, top, full);
    }

    /// <summary>The clusters a qcow2 image holds itself (depth 0 in qemu-img map), as dirty runs over the whole disk.</summary>
    private static async Task<List<DirtyRun>> OwnClustersAsync(string qcow2)
        => QemuNbdExport.Coalesce((await PushBackupTests.MapAsync(qcow2, "qcow2")).Select(e => new DirtyRun(e.Offset, e.End - e.Offset, e.Depth == 0 && e.Data)));

    private static async Task<List<DirtyRun>> DirtyMapAsync(string uri)
        => QemuNbdExport.Coalesce((await PullBackupTests.MapAsync(uri, "qemu:dirty-bitmap:backup-vda")).Select(e => new DirtyRun(e.Offset, e.Length, e.Type == 1)));

    private static long Bytes((long Offset, long Length)[] runs) => runs.Sum(r => r.Length);

    /// <summary>The whole disk as dirty runs: the given ones dirty, the rest clean.</summary>
    private static List<DirtyRun> Runs(params (long Offset, long Length)[] dirty) => QemuNbdExport.Covering(Size, dirty);
}
