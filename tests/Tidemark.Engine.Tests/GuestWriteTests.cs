using System.Text.Json;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Checkpoints;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// qemu-io writes through a running domain's NBD export; checkpoints taken in between; QEMU
/// (qemu-img, qemu-nbd + nbdinfo) judges the images and the checkpoints' bitmaps afterwards.
/// </summary>
public sealed class GuestWriteTests
{
    private const long Size = 16 << 20;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CheckpointBitmaps_HoldExactlyTheClustersWrittenSince()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("g", Size, vda);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;

        // Written before c1: in no bitmap.
        await Guest.RunAsync(socket, "vda", "write -P 0x61 0 64k", "write -P 0x62 1M 128k");
        Assert.Equal("c1", await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));

        // A 4 KiB write dirties its whole 64 KiB cluster; zeroes and trims count as writes.
        await Guest.RunAsync(socket, "vda", "write -P 0x63 4M 64k", "write -z 8M 64k", "write -P 0x64 1M 4k", "discard 6M 64k");
        Assert.Equal("c2", await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct));
        await Guest.RunAsync(socket, "vda", "write -P 0x65 12M 64k");

        // --size: bytes dirty since the checkpoint, counted by whole granules.
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='327680'/>", await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size | CheckpointFormatFlags.NoDomain, Ct));
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c2' size='65536'/>", await domain.Checkpoints.GetXmlAsync("c2", CheckpointFormatFlags.Size | CheckpointFormatFlags.NoDomain, Ct));

        await domain.DestroyAsync(Ct);
        var image = test.ImagePath("g", vda);
        await Peer.RunCheckedAsync("qemu-img", "check", image);
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", image)).RootElement;
        var bitmaps = info.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").EnumerateArray()
            .Select(b => (Name: b.GetProperty("name").GetString(), Flags: string.Join(',', b.GetProperty("flags").EnumerateArray().Select(f => f.GetString())), Granularity: b.GetProperty("granularity").GetInt64()))
            .ToList();
        Assert.Equal([("c1", "auto", 65536L), ("c2", "auto", 65536L)], bitmaps);

        await using (var export = await QemuNbdExport.StartAsync(image, test.Directory.File("q.sock"), "c1", "c2"))
        {
            Assert.Equal(Dirty((1 << 20, 64 << 10), (4 << 20, 64 << 10), (6 << 20, 64 << 10), (8 << 20, 64 << 10), (12 << 20, 64 << 10)), await export.DirtyMapAsync("c1"));
            Assert.Equal(Dirty((12 << 20, 64 << 10)), await export.DirtyMapAsync("c2"));
        }

        // Every acknowledged byte reached the image.
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x61 0 64k", "-c", "read -P 0x64 1M 4k", "-c", "read -P 0x62 1052672 126976", "-c", "read -P 0x63 4M 64k", "-c", "read -P 0 8M 64k", "-c", "read -P 0x65 12M 64k", image);
    }

    [Fact]
    public async Task RawDisk_IsServedAndWritten_ButGetsNoBitmap()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb", "raw");
        var domain = await test.DefineAsync("r", Size, vda, vdb);
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vdb", "write -P 0x71 2M 64k");

        // Without <disks>, every writable disk would get a bitmap: a raw one cannot.
        var error = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.CreateAsync("<domaincheckpoint/>", cancellationToken: Ct));
        Assert.Equal("unsupported configuration: checkpoint for disk vdb unsupported for storage type raw", error.Message);
        Assert.Equal(0, domain.Checkpoints.Count);

        // Once one disk is listed, the unlisted ones get no bitmap either (spec §2.3 step 5).
        var name = await domain.Checkpoints.CreateAsync("<domaincheckpoint><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal("1700000000", name);
        var xml = await domain.Checkpoints.GetXmlAsync(name, CheckpointFormatFlags.NoDomain, Ct);
        Assert.Equal(
            """
            <domaincheckpoint>
              <name>1700000000</name>
              <creationTime>1700000000</creationTime>
              <disks>
                <disk name='vda' checkpoint='bitmap' bitmap='1700000000'/>
                <disk name='vdb' checkpoint='no'/>
              </disks>
            </domaincheckpoint>

            """,
            xml);
        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x71 2M 64k", test.ImagePath("r", vdb));
    }

    [Fact]
    public async Task InactiveDomain_CheckpointAddsAndDeleteRemovesBitmapsOffline()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("o", Size, vda, vdb);
        Assert.Equal(DomainState.ShutOff, domain.State);

        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>off1</name></domaincheckpoint>", cancellationToken: Ct);
        foreach (var disk in new[] { vda, vdb })
        {
            var info = await Peer.RunCheckedAsync("qemu-img", "info", test.ImagePath("o", disk));
            Assert.Contains("name: off1", info, StringComparison.Ordinal);
            await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("o", disk));
        }

        // The bitmap records guest writes once the domain runs.
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vdb", "write 3M 64k");
        Assert.Contains("bitmap='off1' size='65536'", await domain.Checkpoints.GetXmlAsync("off1", CheckpointFormatFlags.Size, Ct));
        await domain.DestroyAsync(Ct);

        await domain.Checkpoints.DeleteAsync("off1", cancellationToken: Ct);
        foreach (var disk in new[] { vda, vdb })
        {
            Assert.DoesNotContain("off1", await Peer.RunCheckedAsync("qemu-img", "info", test.ImagePath("o", disk)), StringComparison.Ordinal);
        }

        Assert.False(File.Exists(Path.Combine(test.StateRoot, "checkpoint", "o", "off1.xml")));
    }

    private static List<DirtyRun> Dirty(params (long Offset, long Length)[] runs) => QemuNbdExport.Covering(Size, runs);
}
