using System.Text.Json;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Deleting a checkpoint of a running domain whose disk is an overlay on a qcow2 backing file
/// that holds the checkpoint's bitmap too, as an external snapshot leaves it (spec §6.4,
/// "discard": the bitmap is removed from every layer that holds it). qemu-img judges both
/// layers.
/// </summary>
public sealed class CheckpointDeleteTests
{
    private const long Size = 16 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RunningDomain_DeleteRemovesTheBitmapFromTheBackingLayerToo()
    {
        await using var test = await TestHost.CreateAsync();
        var (base_, top) = await MakeChainAsync(test);
        var domain = await test.DefineAsync("d", Size, new TestDisk("vda", Path: top));
        await domain.StartAsync(Ct);
        Assert.Equal("c1", await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.Equal(["c1", "keep"], await BitmapsAsync(base_));

        // The top's bitmaps reach its file when the domain stops (as QEMU stores them at close);
        // the base's file changes at once, while the domain runs. Its other bitmap stays.
        await domain.Checkpoints.DeleteAsync("c1", cancellationToken: Ct);
        Assert.Equal(["keep"], await BitmapsAsync(base_));

        // The base is read-only again under the running domain, which denies writers it again.
        var writer = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "flush", base_]);
        Assert.NotEqual(0, writer.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", writer.Stderr, StringComparison.Ordinal);

        // The guest still reads the base's data through the overlay, and writes on.
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "read -P 0x61 0 64k", "write -P 0x62 64k 64k", "flush");
        await domain.DestroyAsync(Ct);
        Assert.Empty(await BitmapsAsync(top));
        Assert.Equal(["keep"], await BitmapsAsync(base_));
        await Peer.RunCheckedAsync("qemu-img", "check", base_);
        await Peer.RunCheckedAsync("qemu-img", "check", top);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x61 0 64k", "-c", "read -P 0x62 64k 64k", top);

        // The base is back to read-only under the domain: another reader may share it again.
        await domain.StartAsync(Ct);
        await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x61 0 64k", base_);
        await domain.DestroyAsync(Ct);
    }

    [Fact]
    public async Task RunningDomain_BackingLayerReadByAnotherProcess_DeleteFailsAndChangesNothing()
    {
        await using var test = await TestHost.CreateAsync();
        var (base_, top) = await MakeChainAsync(test);
        var domain = await test.DefineAsync("d", Size, new TestDisk("vda", Path: top));
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        // Another VM using the same base image: it denies writing, so the base cannot be reopened read-write.
        await using (await QemuIoHolder.HoldAsync(base_, readOnly: true))
        {
            var error = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.DeleteAsync("c1", cancellationToken: Ct));
            Assert.Contains("Failed to get \"write\" lock", error.Message, StringComparison.Ordinal);
            Assert.Contains(base_, error.Message, StringComparison.Ordinal);
        }

        Assert.Equal(["c1"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Equal(["c1", "keep"], await BitmapsAsync(base_));
        Assert.True(domain.Running!.DiskByTarget("vda")!.HasValidBitmap("c1"));

        // Once the other reader is gone the delete goes through.
        await domain.Checkpoints.DeleteAsync("c1", cancellationToken: Ct);
        Assert.Empty(await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Equal(["keep"], await BitmapsAsync(base_));
        await domain.DestroyAsync(Ct);
        Assert.Empty(await BitmapsAsync(top));
        await Peer.RunCheckedAsync("qemu-img", "check", base_);
        await Peer.RunCheckedAsync("qemu-img", "check", top);
    }

    [Fact]
    public async Task InactiveDomain_DeleteRemovesTheBitmapFromTheBackingLayerToo()
    {
        await using var test = await TestHost.CreateAsync();
        var (base_, top) = await MakeChainAsync(test);
        var domain = await test.DefineAsync("d", Size, new TestDisk("vda", Path: top));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        await domain.Checkpoints.DeleteAsync("c1", cancellationToken: Ct);

        Assert.Empty(await BitmapsAsync(top));
        Assert.Equal(["keep"], await BitmapsAsync(base_));
        await Peer.RunCheckedAsync("qemu-img", "check", base_);
        await Peer.RunCheckedAsync("qemu-img", "check", top);
    }

    // base.qcow2 with data and bitmaps c1 (as an external snapshot taken after checkpoint c1
    // leaves it) and keep; top.qcow2 an empty overlay on it.
    private static async Task<(string Base, string Top)> MakeChainAsync(TestHost test)
    {
        var base_ = test.Directory.File("base.qcow2");
        var top = test.Directory.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", base_, "16M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", base_, "c1");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", base_, "keep");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 64k", "-c", "write -P 0x61 4M 64k", base_);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", base_, "-F", "qcow2", top);
        return (base_, top);
    }

    // The bitmap names qemu-img info lists for one image (-U: the domain may hold it open).
    private static async Task<string[]> BitmapsAsync(string image)
    {
        using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", image));
        return info.RootElement.TryGetProperty("format-specific", out var specific)
            && specific.GetProperty("data").TryGetProperty("bitmaps", out var bitmaps)
            ? [.. bitmaps.EnumerateArray().Select(b => b.GetProperty("name").GetString()!).Order(StringComparer.Ordinal)]
            : [];
    }
}
