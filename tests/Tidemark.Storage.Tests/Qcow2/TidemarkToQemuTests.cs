using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>Images Tidemark creates and writes are clean for qemu-img check and read identically by QEMU.</summary>
public sealed class TidemarkToQemuTests
{
    [Theory]
    [InlineData(65536, 3, 1)]
    [InlineData(512, 3, 2)]
    [InlineData(4096, 2, 3)]
    [InlineData(2 << 20, 3, 4)]
    [InlineData(65536, 2, 5)]
    public async Task RandomWritesZeroesDiscards_AreCleanAndIdentical(int clusterSize, int version, int seed)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        const long Size = (24 << 20) + 1536;
        var reference = new byte[Size];
        var random = new Random(seed);
        var ct = TestContext.Current.CancellationToken;
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = clusterSize, Version = version }, ct))
        {
            await RandomOpsAsync(image, reference, random, 150, ct);
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", path)).RootElement;
        Assert.Equal(Size, info.GetProperty("virtual-size").GetInt64());
        Assert.Equal(clusterSize, info.GetProperty("cluster-size").GetInt32());
        Assert.Equal(version == 3 ? "1.1" : "0.10", info.GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString());
    }

    [Fact]
    public async Task WritesOverBackingChain_CopyOnWritePartialClusters()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var basePath = dir.File("base.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", basePath, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", basePath);
        var top = dir.File("top.qcow2");
        await using (var image = await Qcow2Image.CreateAsync(top, new Qcow2CreateOptions { Size = 8 << 20, BackingFile = "base.qcow2", BackingFormat = ImageFormat.Qcow2 }, ct))
        {
            Assert.NotNull(image.Backing);
            var reference = await ImageContent.ReadAllAsync(image);
            await RandomOpsAsync(image, reference, new Random(11), 80, ct);
            ImageContent.AssertSame(reference, await ImageContent.ReadAllAsync(image));
        }

        await ImageContent.AssertCleanAsync(top);
        var expected = await ImageContent.QemuReadAllAsync(top, dir);
        await using var reopened = await Qcow2Image.OpenAsync(top, readOnly: true, ct);
        ImageContent.AssertSame(expected, await ImageContent.ReadAllAsync(reopened));
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", top)).RootElement;
        Assert.Equal("base.qcow2", info.GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", info.GetProperty("backing-filename-format").GetString());
    }

    [Fact]
    public async Task CreateDetached_BackingOpenForWriting_NamesItWithoutOpeningIt()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var basePath = dir.File("base.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", basePath, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4M", basePath);
        var top = dir.File("top.qcow2");
        await using (var live = await Qcow2Image.OpenAsync(basePath, readOnly: false, ct))
        {
            // A plain create opens the backing file read-only, which the live image's lock refuses.
            await Assert.ThrowsAsync<StorageException>(async () => await Qcow2Image.CreateAsync(dir.File("plain.qcow2"), new Qcow2CreateOptions { Size = 4 << 20, BackingFile = basePath, BackingFormat = ImageFormat.Qcow2 }, ct));
            await using var image = await Qcow2Image.CreateDetachedAsync(top, new Qcow2CreateOptions { Size = 4 << 20, BackingFile = basePath, BackingFormat = ImageFormat.Qcow2 }, ct);
            Assert.Null(image.Backing);
            await image.WriteAsync(65536, new byte[65536].Select(_ => (byte)0x11).ToArray(), cancellationToken: ct);
            await image.WriteAsync(3 << 20, new byte[512].Select(_ => (byte)0x22).ToArray(), cancellationToken: ct);
        }

        await ImageContent.AssertCleanAsync(top);
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", top)).RootElement;
        Assert.Equal(basePath, info.GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", info.GetProperty("backing-filename-format").GetString());

        // The cluster filled by copy-on-write took zeroes, not the backing file's 0x5a.
        var read = await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x11 64k 64k", "-c", "read -P 0x22 3M 512", "-c", "read -P 0 3146240 65024", "-c", "read -P 0x5a 0 64k", top);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QemuWritesOnTopOfTidemarkImage_StaysClean()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var path = dir.File("t.qcow2");
        var reference = new byte[16 << 20];
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = reference.Length }, ct))
        {
            await RandomOpsAsync(image, reference, new Random(3), 60, ct);
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 200k", "-c", "write -z 5M 1M", "-c", "discard 8M 2M", path);
        reference.AsSpan(1 << 20, 200 << 10).Fill(0x77);
        reference.AsSpan(5 << 20, 1 << 20).Clear();
        await ImageContent.AssertCleanAsync(path);
        var qemu = await ImageContent.QemuReadAllAsync(path, dir);

        // Discarded content is unspecified: compare everything else with the reference, all of it with QEMU.
        ImageContent.AssertSame(reference.AsSpan(0, 8 << 20).ToArray(), qemu.AsSpan(0, 8 << 20).ToArray());
        ImageContent.AssertSame(reference.AsSpan(10 << 20).ToArray(), qemu.AsSpan(10 << 20).ToArray());
        await using var reopened = await Qcow2Image.OpenAsync(path, readOnly: false, ct);
        ImageContent.AssertSame(qemu, await ImageContent.ReadAllAsync(reopened));
        await reopened.WriteAsync(9 << 20, new byte[] { 1, 2, 3 }, WriteFlags.None, ct);
    }

    /// <summary>Writes, zeroes and discards of every alignment, mirrored into <paramref name="reference"/>.</summary>
    internal static async Task RandomOpsAsync(IBlockImage image, byte[] reference, Random random, int count, CancellationToken ct)
    {
        var size = reference.Length;
        for (var i = 0; i < count; i++)
        {
            var offset = random.NextInt64(size);
            var length = (int)Math.Min(size - offset, random.Next(4) switch { 0 => random.Next(1, 600), 1 => random.Next(1, 70000), 2 => 65536, _ => random.Next(1, 300000) });
            if (random.Next(3) == 0)
            {
                offset &= ~0xffffL;
                length = (int)Math.Min(size - offset, length);
            }

            switch (random.Next(10))
            {
                case < 6:
                    var data = new byte[length];
                    random.NextBytes(data);
                    await image.WriteAsync(offset, data, WriteFlags.None, ct);
                    data.CopyTo(reference, offset);
                    break;
                case < 8:
                    await image.WriteZeroesAsync(offset, length, random.Next(2) == 0 ? WriteFlags.MayUnmap : WriteFlags.None, ct);
                    reference.AsSpan((int)offset, length).Clear();
                    break;
                case 8:
                    // Discard leaves the content unspecified: read back what the image now says.
                    await image.DiscardAsync(offset, length, ct);
                    await image.ReadAsync(offset, reference.AsMemory((int)offset, length), ct);
                    break;
                default:
                    await image.FlushAsync(ct);
                    break;
            }
        }
    }
}
