using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// <see cref="Qcow2Image.WriteGatheredAsync"/>: pieces scattered over the guest, written with one
/// allocation and one file write where they are whole clusters needing new ones (a pull
/// backup's scratch taking a batch of 4 KiB copies), as plain writes otherwise; with
/// <see cref="Qcow2Image.WriteGatheredDirectly"/> (the scratch's way) past the page cache where
/// aligned. qemu-img judges the image, its mapping and its content.
/// </summary>
public sealed class GatheredWriteTests
{
    private const int Cluster = 4096;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ScatteredWholeClusters_LandNextToEachOther_InTheOrderGiven(bool direct)
    {
        using var dir = new TempDirectory();
        var path = dir.File("scratch.qcow2");
        const long Size = 16L << 20;
        var reference = new byte[Size];
        var clusters = Enumerable.Range(0, (int)(Size / Cluster) - 3).ToArray();
        new Random(5).Shuffle(clusters);

        // 600 pieces in three batches, one of three clusters among them: more than one allocation's worth.
        var batches = new List<List<GuestData>>();
        for (var b = 0; b < 3; b++)
        {
            var batch = new List<GuestData>();
            for (var i = 0; i < 200; i++)
            {
                var length = b == 1 && i == 7 ? 3 * Cluster : Cluster;
                var data = new byte[length];
                new Random((b * 1000) + i).NextBytes(data);
                var offset = (long)clusters[(b * 200) + i] * Cluster;
                if (length > Cluster)
                {
                    // A run of three: the highest clusters, which no other piece takes.
                    offset = Size - (3 * Cluster);
                }

                data.CopyTo(reference.AsSpan((int)offset));
                batch.Add(new GuestData(offset, data));
            }

            batches.Add(batch);
        }

        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = Cluster }, Ct))
        {
            image.CacheMode = CacheMode.Unsafe;
            if (direct)
            {
                image.WriteGatheredDirectly();
            }

            foreach (var batch in batches)
            {
                await image.WriteGatheredAsync(batch, Ct);
            }
        }

        var check = await ImageContent.AssertCleanAsync(path);
        Assert.Equal(602, check.GetProperty("allocated-clusters").GetInt32());
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));

        // Each batch's data lies in the file in the order of its pieces, each right after the
        // one before (the batch's L2 tables were placed ahead of its data).
        var hostOf = await HostOffsetsAsync(path);
        foreach (var batch in batches)
        {
            for (var i = 1; i < batch.Count; i++)
            {
                Assert.Equal(hostOf[batch[i - 1].Offset] + batch[i - 1].Data.Length, hostOf[batch[i].Offset]);
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public Task PartialAllocatedAndRepeatedPieces_AreWrittenAsPlainWritesWould(bool direct) => GatherAndJudgeAsync(
        direct,
        1L << 20,
        Cluster,
        new(8 * Cluster, Filled(2 * Cluster, 0x11)),
        [
            new(20 * Cluster, Filled(Cluster, 0x22)),           // fresh, whole: gathered
            new((8 * Cluster) + 512, Filled(1024, 0x33)),       // inside an allocated cluster: in place
            new(9 * Cluster, Filled(Cluster, 0x44)),            // allocated, whole: in place
            new((30 * Cluster) + 100, Filled(Cluster, 0x55)),   // unaligned, two fresh clusters: copy on write
            new(20 * Cluster, Filled(Cluster, 0x66)),           // the first piece again: the later one wins
            new(40 * Cluster, Filled(2 * Cluster, 0x77)),       // fresh, whole: gathered
        ]);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public Task SmallPiecesInLargerClusters_AreWrittenAsPlainWritesWould(bool direct) => GatherAndJudgeAsync(
        direct,
        4L << 20,
        64 << 10,
        null,
        [.. Enumerable.Range(0, 40).Select(i => new GuestData((long)((i * 37) % 1024) * 4096, Filled(4096, (byte)(i + 1))))]);

    /// <summary>512-byte clusters: gathered runs that are not page-aligned go through the page cache even with direct writes on.</summary>
    [Fact]
    public Task UnalignedRuns_WithDirectWrites_GoThroughThePageCache() => GatherAndJudgeAsync(
        true,
        1L << 20,
        512,
        new(0, Filled(512, 0x10)),
        [.. Enumerable.Range(0, 50).Select(i => new GuestData((long)((i * 13) % 2048) * 512, Filled(512 * (1 + (i % 3)), (byte)(i + 1))))]);

    /// <summary>
    /// Direct writes into host clusters whose old content the page cache holds (data read, then
    /// discarded, its host cluster taken again by the gathered write): reads afterwards, here and
    /// in qemu-io, see the new bytes, never the cached old ones.
    /// </summary>
    [Fact]
    public async Task DirectWrites_IntoHostClustersThePageCacheHolds_ReadBackNew()
    {
        using var dir = new TempDirectory();
        var path = dir.File("reused.qcow2");
        const long Size = 1L << 20;
        var reference = new byte[Size];
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = Cluster }, Ct))
        {
            image.CacheMode = CacheMode.Unsafe;
            image.WriteGatheredDirectly();
            await image.WriteAsync(0, Filled(16 * Cluster, 0xAA), cancellationToken: Ct);
            var hostBefore = await image.GetHostOffsetAsync(0, Ct);
            Assert.Equal(0xAA, (await ImageContent.ReadAllAsync(image))[0]);
            await image.DiscardAsync(0, 16 * Cluster, Ct);
            await image.FlushAsync(Ct);

            var pieces = Enumerable.Range(0, 16).Select(i => new GuestData((long)(100 + (i * 7)) * Cluster, Filled(Cluster, (byte)(i + 1)))).ToList();
            await image.WriteGatheredAsync(pieces, Ct);
            foreach (var piece in pieces)
            {
                piece.Data.Span.CopyTo(reference.AsSpan((int)piece.Offset));
            }

            // The discarded clusters were taken again: the test covers what it says.
            var hosts = new List<long?>();
            foreach (var piece in pieces)
            {
                hosts.Add(await image.GetHostOffsetAsync(piece.Offset, Ct));
            }

            Assert.Contains(hostBefore, hosts);
            ImageContent.AssertSame(reference, await ImageContent.ReadAllAsync(image));
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Fact]
    public async Task BadPieces_AreRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDirectory();
        var path = dir.File("bad.qcow2");
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = Cluster }, Ct))
        {
            await Assert.ThrowsAnyAsync<ArgumentException>(async () => await image.WriteGatheredAsync([new(0, Filled(Cluster, 1)), new((1 << 20) - 512, Filled(Cluster, 2))], Ct));
        }

        await ImageContent.AssertCleanAsync(path);
        Assert.Empty(await HostOffsetsAsync(path));
    }

    /// <summary>
    /// A plain write of <paramref name="before"/>, then <paramref name="pieces"/> gathered: the
    /// image reads as plain writes in that order would leave it, here and in qemu-io, and
    /// qemu-img check finds it clean.
    /// </summary>
    private static async Task GatherAndJudgeAsync(bool direct, long size, int clusterSize, GuestData? before, IReadOnlyList<GuestData> pieces)
    {
        using var dir = new TempDirectory();
        var path = dir.File("gathered.qcow2");
        var reference = new byte[size];
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize }, Ct))
        {
            if (direct)
            {
                image.WriteGatheredDirectly();
            }

            if (before is { } plain)
            {
                await image.WriteAsync(plain.Offset, plain.Data, cancellationToken: Ct);
                plain.Data.Span.CopyTo(reference.AsSpan((int)plain.Offset));
            }

            await image.WriteGatheredAsync(pieces, Ct);
            foreach (var piece in pieces)
            {
                piece.Data.Span.CopyTo(reference.AsSpan((int)piece.Offset));
            }

            ImageContent.AssertSame(reference, await ImageContent.ReadAllAsync(image));
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
    }

    /// <summary>Guest offset → host offset of every data cluster, from <c>qemu-img map</c>.</summary>
    private static async Task<Dictionary<long, long>> HostOffsetsAsync(string path)
    {
        var map = new Dictionary<long, long>();
        using var json = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", path));
        foreach (var extent in json.RootElement.EnumerateArray())
        {
            if (!extent.GetProperty("data").GetBoolean())
            {
                continue;
            }

            var start = extent.GetProperty("start").GetInt64();
            var host = extent.GetProperty("offset").GetInt64();
            for (var at = 0L; at < extent.GetProperty("length").GetInt64(); at += Cluster)
            {
                map[start + at] = host + at;
            }
        }

        return map;
    }

    private static byte[] Filled(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }
}
