using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Runs of host clusters that cross refcount blocks and outgrow the refcount table are allocated
/// as QEMU's alloc_clusters_noref + update_refcount do: the blocks and tables made on the way never
/// overlap the run (qcow2-refcount.c, the -EAGAIN retry of qcow2_alloc_clusters).
/// </summary>
public sealed class RefcountAllocationTests
{
    [Theory]
    [InlineData(512, 16)]
    [InlineData(512, 64)]
    [InlineData(1024, 64)]
    [InlineData(512, 8)]
    public async Task LongWrite_CrossesRefcountBlocksAndGrowsTable_CleanAndIdentical(int clusterSize, int refcountBits)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var ct = TestContext.Current.CancellationToken;

        // One refcount table cluster covers clusterSize/8 blocks of clusterSize*8/refcountBits
        // clusters each; the data below needs more than that, so the table moves mid-write.
        var covered = (long)(clusterSize / 8) * (clusterSize * 8 / refcountBits) * clusterSize;
        var size = Math.Min(covered * 2, 48L << 20);
        var reference = new byte[size];
        new Random(7).NextBytes(reference);
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, RefcountBits = refcountBits }, ct))
        {
            await image.WriteAsync(0, reference, WriteFlags.None, ct);
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Fact]
    public async Task RunsAfterQemuFilledTheTable_CleanAndIdentical()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var ct = TestContext.Current.CancellationToken;

        // QEMU fills the file up to just below the end of what the refcount table covers
        // (64 blocks x 256 clusters x 512 bytes = 8 MiB); Tidemark's next runs then straddle it.
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=512", path, "16M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 7800k", path);
        var reference = (await ImageContent.QemuReadAllAsync(path, dir)).ToArray();
        var random = new Random(3);
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, ct))
        {
            for (var offset = 7800L << 10; offset < reference.Length; offset += 48 << 10)
            {
                var chunk = new byte[Math.Min(48 << 10, reference.Length - offset)];
                random.NextBytes(chunk);
                await image.WriteAsync(offset, chunk, WriteFlags.None, ct);
                chunk.CopyTo(reference.AsSpan((int)offset));
            }
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Theory]
    [InlineData(512, 64, 256L << 20)]
    [InlineData(512, 16, 1L << 30)]
    [InlineData(1024, 64, 2L << 30)]
    public async Task Grow_L1LongerThanOneRefcountBlockCovers_MatchesQemu(int clusterSize, int refcountBits, long newSize)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var copy = dir.File("q.qcow2");
        var ct = TestContext.Current.CancellationToken;
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", $"cluster_size={clusterSize},refcount_bits={refcountBits}", path, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 4k 600k", path);
        File.Copy(path, copy);
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, ct))
        {
            // The new L1 table alone needs more clusters than one refcount block counts.
            await image.ResizeAsync(newSize, ct);
            await image.WriteAsync(newSize - 8192, new byte[8192].Select(_ => (byte)0x55).ToArray(), WriteFlags.None, ct);
        }

        await Peer.RunCheckedAsync("qemu-img", "resize", "-f", "qcow2", copy, newSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", $"write -P 0x55 {newSize - 8192} 8k", copy);
        await ImageContent.AssertCleanAsync(path);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", path, copy]);
        Assert.Equal(0, compare.ExitCode);
    }
}
