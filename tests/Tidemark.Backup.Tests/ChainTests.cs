using Tidemark.Backup.Repository;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Backup.Verify;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// A full and two incrementals of a running domain on Tidemark's daemon, qemu-io writing as the
/// guest between them (data, zeroes, a discard), each point captured by qemu-img while the
/// guest is quiet. Every point restored equals its capture (qemu-img compare), so does the
/// chain file at that point opened by qemu-img itself, and qemu-img check finds every
/// repository file clean.
/// </summary>
public sealed class ChainTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    /// <summary>
    /// The disk is a qcow2 image on a block device (<c>&lt;disk type='block'&gt;</c>): the client
    /// names a scratch file of its own for each pull, as for any disk, and the chain restores.
    /// </summary>
    [Fact]
    public async Task DiskOnABlockDevice_FullThenIncremental_EveryPointRestoresToItsCapture()
    {
        await using var host = await BackupHost.StartOnBlockDeviceAsync("32M");
        await host.GuestWriteAsync("vda", "write -P 0x61 0 2M", "write -P 0x62 8M 1M");
        var captures = new List<string> { await host.CaptureAsync("vda", "i0.raw") };
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x71 1M 2M", "write -z 8M 64k", "write -P 0x72 20M 512k");
        captures.Add(await host.CaptureAsync("vda", "i1.raw"));
        var inc = await host.BackupAsync(LevelRequest.Incremental);

        Assert.Equal(BackupLevel.Full, full.Disks.Single().Level);
        Assert.Equal(BackupLevel.Incremental, inc.Disks.Single().Level);
        Assert.Equal((2L << 20) + (512L << 10), inc.Disks.Single().DataBytes);
        var points = new[] { full, inc };
        for (var i = 0; i < points.Length; i++)
        {
            var restored = host.Directory.File($"r{i}.raw");
            await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Checkpoint = points[i].Checkpoint, Output = restored }, Ct);
            await AssertIdenticalAsync("raw", restored, captures[i]);
        }

        var verify = await RepositoryVerifier.RunAsync(host.Repository, null, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
    }

    [Fact]
    public async Task FullThenTwoIncrementals_EveryPointRestoresToItsCapture()
    {
        await using var host = await BackupHost.StartAsync(("vda", "32M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 2M", "write -P 0x62 8M 1M");
        var captures = new List<string> { await host.CaptureAsync("vda", "i0.raw") };
        var full = await host.BackupAsync();

        await host.GuestWriteAsync("vda", "write -P 0x71 1M 2M", "write -z 8M 64k", "write -P 0x72 20M 512k");
        captures.Add(await host.CaptureAsync("vda", "i1.raw"));
        var lines = new List<string>();
        var inc1 = await host.BackupAsync(LevelRequest.Auto, lines);

        await host.GuestWriteAsync("vda", "write -P 0x81 0 64k", "discard 20M 256k", "write -P 0x82 30M 1M");
        captures.Add(await host.CaptureAsync("vda", "i2.raw"));
        var inc2 = await host.BackupAsync(LevelRequest.Incremental);

        Assert.Equal(BackupLevel.Full, full.Disks.Single().Level);
        Assert.Equal("no previous backup in the repository", full.Disks.Single().Reason);
        Assert.Equal(BackupLevel.Incremental, inc1.Disks.Single().Level);
        Assert.Equal(full.Checkpoint, inc1.Disks.Single().Base);
        Assert.Contains($"vda: incremental (incremental since checkpoint '{full.Checkpoint}')", lines);
        Assert.Equal(BackupLevel.Incremental, inc2.Disks.Single().Level);
        Assert.Equal($"tidemark.{full.Chain}.0", full.Checkpoint);
        Assert.Equal($"tidemark.{full.Chain}.2", inc2.Checkpoint);
        Assert.Equal(inc1.Checkpoint, inc2.Parent);

        // Full: the 3 MiB written; first incremental: 2 MiB + 512 KiB of data, the zeroed 64 KiB as zeroes.
        Assert.Equal(3L << 20, full.Disks.Single().DataBytes);
        Assert.Equal(3L << 20, full.Disks.Single().Extents.Sum(e => e.Length));
        Assert.Equal((2L << 20) + (512L << 10), inc1.Disks.Single().DataBytes);
        Assert.Contains(inc1.Disks.Single().Extents, e => e.Content == ExtentContent.Zero && e.Offset == 8L << 20);

        // The host keeps only the checkpoint the chain continues from.
        Assert.Contains($"deleted checkpoint {full.Checkpoint} from the host: no disk's chain continues from it", lines);
        Assert.Equal([inc2.Checkpoint], await host.HostCheckpointsAsync());

        var points = new[] { full, inc1, inc2 };
        for (var i = 0; i < points.Length; i++)
        {
            var restored = host.Directory.File($"r{i}.raw");
            var disks = await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Checkpoint = points[i].Checkpoint, Output = restored }, Ct);
            Assert.Equal(restored, disks.Single().Path);
            await AssertIdenticalAsync("raw", restored, captures[i]);

            var chainFile = host.Repository.PathOf("dom", points[i].Disks.Single().File);
            await AssertIdenticalAsync("qcow2", chainFile, captures[i]);
            var check = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", chainFile]);
            Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        }

        // qemu-img follows the relative backing names from the top of the chain.
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--backing-chain", host.Repository.PathOf("dom", inc2.Disks.Single().File));
        Assert.Contains($"backing file: {full.Checkpoint}.qcow2", info, StringComparison.Ordinal);
        Assert.Contains($"backing file: {inc1.Checkpoint}.qcow2", info, StringComparison.Ordinal);

        var verify = await RepositoryVerifier.RunAsync(host.Repository, null, null, Ct);
        Assert.True(verify.Passed, string.Join('\n', verify.Findings));
        Assert.Equal(3, verify.ChainFiles);
    }

    [Fact]
    public async Task Restore_ZeroedAndTrimmedAreasStayHoles_AndQcow2OutputMatches()
    {
        await using var host = await BackupHost.StartAsync(("vda", "64M"));
        await host.GuestWriteAsync("vda", "write -P 0x33 0 64M");
        await host.BackupAsync();

        // Trim half the disk: the next incremental holds zero clusters, not data.
        await host.GuestWriteAsync("vda", "discard 0 32M");
        var capture = await host.CaptureAsync("vda", "trimmed.raw");
        var inc = await host.BackupAsync();
        Assert.Equal(BackupLevel.Incremental, inc.Disks.Single().Level);
        Assert.Equal(0, inc.Disks.Single().DataBytes);
        var incFile = host.Repository.PathOf("dom", inc.Disks.Single().File);
        Assert.True(new FileInfo(incFile).Length < 1 << 20, $"incremental of a trim is {new FileInfo(incFile).Length} bytes");

        var raw = host.Directory.File("out.raw");
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = raw }, Ct);
        await AssertIdenticalAsync("raw", raw, capture);
        // qemu-img map of a raw file reports holes as zero, not data (its first 4 KiB it always
        // counts as data: it probes the start of a raw file by reading it).
        var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", raw);
        Assert.InRange(DataBytes(map, "0"), 32L << 20, (32L << 20) + 4096);

        var qcow2 = host.Directory.File("out.qcow2");
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = qcow2, Format = ImageFormat.Qcow2 }, Ct);
        await AssertIdenticalAsync("qcow2", qcow2, capture);

        var refused = await Assert.ThrowsAsync<BackupException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = raw }, Ct));
        Assert.Equal(BackupErrorReason.OutputExists, refused.Reason);
        await DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "dom", Output = raw, Force = true }, Ct);
    }

    [Fact]
    public async Task OnePercentWritten_IncrementalHoldsAboutOnePercent()
    {
        await using var host = await BackupHost.StartAsync(("vda", "64M"));
        await host.GuestWriteAsync("vda", "write -P 0x44 0 64M");
        await host.BackupAsync();

        // 10 writes of 64 KiB spread over the disk: 640 KiB, 1 % of 64 MiB.
        await host.GuestWriteAsync("vda", Enumerable.Range(0, 10).Select(i => $"write -P 0x{i + 1:x2} {i * 6}M 64k").ToArray());
        var inc = await host.BackupAsync(LevelRequest.Incremental);
        Assert.Equal(640L << 10, inc.Disks.Single().DataBytes);

        var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "qcow2", host.Repository.PathOf("dom", inc.Disks.Single().File));
        Assert.Equal(640L << 10, DataBytes(map, "0"));
    }

    /// <summary>The bytes <c>qemu-img map --output=json</c> reports as data at <paramref name="depth"/>.</summary>
    private static long DataBytes(string map, string depth) =>
        System.Text.RegularExpressions.Regex.Matches(map, $"\"length\": (\\d+), \"depth\": {depth}, \"present\": true, \"zero\": false, \"data\": true")
            .Sum(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));

    private static async Task AssertIdenticalAsync(string format, string image, string capture)
    {
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", format, "-F", "raw", image, capture]);
        Assert.True(compare.ExitCode == 0, $"{image} vs {capture}: {compare.Stdout}{compare.Stderr}");
    }
}
