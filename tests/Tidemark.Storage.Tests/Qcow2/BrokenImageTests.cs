using System.Buffers.Binary;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;
using static Tidemark.Storage.Tests.Qcow2.ImageBytes;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// An image whose metadata turns out damaged while it is being written: the operation fails
/// with a StorageException, the image is broken from then on, and closing it neither throws
/// nor writes a byte.
/// </summary>
public sealed class BrokenImageTests
{
    private static async Task<ulong> ReadU64Async(string path, long offset)
    {
        var bytes = new byte[8];
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
        f.Seek(offset, SeekOrigin.Begin);
        await f.ReadExactlyAsync(bytes, TestContext.Current.CancellationToken);
        return BinaryPrimitives.ReadUInt64BigEndian(bytes);
    }

    /// <summary>qemu-img image with two bitmaps whose refcounts for clusters 5..11 were zeroed.</summary>
    private static async Task<string> DamagedRefcountsAsync(TempDirectory dir)
    {
        var path = dir.File("bmd.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", path);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bc");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "bd");
        var block = (long)await ReadU64Async(path, (long)await ReadU64Async(path, 48));
        await using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.Seek(block + 10, SeekOrigin.Begin);
            await f.WriteAsync(new byte[14], TestContext.Current.CancellationToken);
        }

        return path;
    }

    [Fact]
    public async Task RemoveBitmap_RefcountsTooLow_FailsBreaksTheImageAndCloseWritesNothing()
    {
        using var dir = new TempDirectory();
        var path = await DamagedRefcountsAsync(dir);

        var image = await Qcow2Image.OpenAsync(path, readOnly: false, TestContext.Current.CancellationToken);
        var failure = await Record.ExceptionAsync(async () => await image.Bitmaps.RemoveAsync("bc", TestContext.Current.CancellationToken));

        var e = Assert.IsType<StorageException>(failure);
        Assert.Equal(StorageErrorReason.Corrupt, e.Reason);
        Assert.Contains("would drop below zero", e.Message, StringComparison.Ordinal);
        Assert.True(image.IsBroken);
        await Assert.ThrowsAsync<StorageException>(async () => await image.WriteAsync(0, new byte[512], cancellationToken: TestContext.Current.CancellationToken));

        var afterFailure = await HashAsync(path);
        await image.DisposeAsync();
        Assert.Equal(afterFailure, await HashAsync(path));
    }

    [Fact]
    public async Task MissingBitmap_IsRefusedWithoutBreakingTheImage()
    {
        using var dir = new TempDirectory();
        var path = dir.File("ok.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");

        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, TestContext.Current.CancellationToken))
        {
            var e = await Assert.ThrowsAsync<StorageException>(async () => await image.Bitmaps.RemoveAsync("nosuch", TestContext.Current.CancellationToken));
            Assert.Equal(StorageErrorReason.BitmapNotFound, e.Reason);
            Assert.False(image.IsBroken);
        }

        // Closing stored the bitmap again: consistent, as qemu-img check and info see it.
        await Peer.RunCheckedAsync("qemu-img", "check", path);
        Assert.DoesNotContain("in-use", await Peer.RunCheckedAsync("qemu-img", "info", path), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 512)]
    [InlineData(511, 512)]
    [InlineData(512, 512)]
    [InlineData(513, 1024)]
    [InlineData(1001, 1024)]
    [InlineData(1023, 1024)]
    public void DiskSize_RoundsUpToWholeSectors(long bytes, long expected) => Assert.Equal(expected, DiskSize.RoundUp(bytes));

    [Theory]
    [InlineData(1001, 512)]
    [InlineData(1024, 1024)]
    [InlineData(511, 0)]
    public void DiskSize_Qcow2HeaderSizeIsWholeSectors(long header, long expected) => Assert.Equal(expected, DiskSize.FromQcow2Header(header));

    [Fact]
    public async Task RawImage_OddLength_ReadsAsWholeSectorsWithAZeroTail()
    {
        using var dir = new TempDirectory();
        var path = dir.File("odd.raw");
        await File.WriteAllBytesAsync(path, Enumerable.Repeat((byte)0x5a, 1001).ToArray(), TestContext.Current.CancellationToken);

        await using var image = RawImage.Open(path, readOnly: true);
        Assert.Equal(1024, image.VirtualSize);
        var buffer = new byte[1024];
        await image.ReadAsync(0, buffer, TestContext.Current.CancellationToken);
        Assert.All(buffer[..1001], b => Assert.Equal(0x5a, b));
        Assert.All(buffer[1001..], b => Assert.Equal(0, b));

        var extents = await image.GetExtentsAsync(0, 1024, TestContext.Current.CancellationToken);
        Assert.Equal([new BlockExtent(0, 1001, ExtentKind.Data, 1), new BlockExtent(1001, 23, ExtentKind.Hole | ExtentKind.Zero, 1)], extents);
    }
}
