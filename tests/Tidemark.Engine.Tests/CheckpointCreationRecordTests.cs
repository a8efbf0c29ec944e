using System.Text.Json;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The start after a crash that cut an offline checkpoint creation short, set up by hand:
/// <c>jobs/&lt;domain&gt;.checkpoint</c> as the creation writes it, and the bitmap stored into
/// some of the disks by <c>qemu-img bitmap --add</c>, as the creation's close would have. Without
/// the checkpoint's metadata the bitmap is a stray and is removed from every disk the record
/// names (and only those); with the metadata the checkpoint was created and only the record goes.
/// </summary>
public sealed class CheckpointCreationRecordTests
{
    private const long Size = 16 << 20;
    private static readonly TestDisk[] Disks = [new("vda"), new("vdb"), new("vdc")];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InterruptedCreation_WithoutMetadata_StrayBitmapsRemoved_OthersKept_NameFreeAgain()
    {
        await using var test = await TestHost.CreateAsync();
        await test.DefineAsync("r", Size, Disks);
        await test.Host.LookupByName("r").Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);

        // The creation of k1 reached vda and vdb; vdc is not in the record and keeps its own k1.
        foreach (var disk in Disks)
        {
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", test.ImagePath("r", disk), "k1");
        }

        var record = Path.Combine(test.StateRoot, "jobs", "r.checkpoint");
        await File.WriteAllTextAsync(record, "k1\nvda\nvdb\n", Ct);

        await test.ReopenAfterCrashAsync();
        Assert.False(File.Exists(record));
        Assert.Equal(["c0"], await BitmapNamesAsync(test, Disks[0]));
        Assert.Equal(["c0"], await BitmapNamesAsync(test, Disks[1]));
        Assert.Equal(["c0", "k1"], await BitmapNamesAsync(test, Disks[2]));
        foreach (var disk in Disks)
        {
            await FlushedWrites.AssertNoCorruptionAsync(test.ImagePath("r", disk));
        }

        // The name is free again on the disks the creation had reached.
        var domain = test.Host.LookupByName("r");
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name><disks><disk name='vda'/><disk name='vdb'/><disk name='vdc' checkpoint='no'/></disks></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal(["c0", "k1"], await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct));
        Assert.Equal(["c0", "k1"], await BitmapNamesAsync(test, Disks[0]));
        Assert.Empty(Directory.GetFiles(Path.Combine(test.StateRoot, "jobs"), "*.checkpoint"));
    }

    [Fact]
    public async Task InterruptedCreation_WithMetadata_TheCheckpointStays()
    {
        await using var test = await TestHost.CreateAsync();
        await test.DefineAsync("s", Size, Disks);
        await test.Host.LookupByName("s").Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name></domaincheckpoint>", cancellationToken: Ct);

        // The kill came after the metadata was saved, before the record was dropped.
        var record = Path.Combine(test.StateRoot, "jobs", "s.checkpoint");
        await File.WriteAllTextAsync(record, "k1\nvda\nvdb\nvdc\n", Ct);
        await test.ReopenAfterCrashAsync();
        Assert.False(File.Exists(record));
        foreach (var disk in Disks)
        {
            Assert.Equal(["k1"], await BitmapNamesAsync(test, disk));
        }

        var domain = test.Host.LookupByName("s");
        await domain.StartAsync(Ct);
        var xml = await domain.Checkpoints.GetXmlAsync("k1", cancellationToken: Ct);
        Assert.Equal("k1", await domain.Checkpoints.CreateAsync(xml, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
        await domain.DestroyAsync(Ct);
    }

    private static async Task<List<string>> BitmapNamesAsync(TestHost test, TestDisk disk)
    {
        using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", test.ImagePath(test.Host.ListDomains()[0].Name, disk)));
        return info.RootElement.GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out var list)
            ? [.. list.EnumerateArray().Select(b => b.GetProperty("name").GetString()!)]
            : [];
    }
}
