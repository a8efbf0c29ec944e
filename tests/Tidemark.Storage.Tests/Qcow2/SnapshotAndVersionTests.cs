using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

public sealed class SnapshotAndVersionTests
{
    [Fact]
    public async Task WritesIntoImageWithInternalSnapshot_KeepSnapshotIntact()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var path = dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 2M", "-c", "write -c -P 0x43 3M 64k", path);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "snap", path);
        var atSnapshot = await ImageContent.QemuReadAllAsync(path, dir);

        // Shared L2 tables and data clusters (refcount 2, no COPIED) must be copied, never written in place.
        var expected = (byte[])atSnapshot.Clone();
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, ct))
        {
            await TidemarkToQemuTests.RandomOpsAsync(image, expected, new Random(5), 40, ct);
        }

        await ImageContent.AssertCleanAsync(path);
        ImageContent.AssertSame(expected, await ImageContent.QemuReadAllAsync(path, dir));
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-a", "snap", path);
        await ImageContent.AssertCleanAsync(path, allowLeaks: true);
        ImageContent.AssertSame(atSnapshot, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Fact]
    public async Task Version2OverBacking_ZeroesAndDiscardsAreCorrect()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var basePath = dir.File("base.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", basePath, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x99 0 4M", basePath);
        var top = dir.File("v2.qcow2");
        byte[] reference;
        await using (var image = await Qcow2Image.CreateAsync(top, new Qcow2CreateOptions { Size = 4 << 20, Version = 2, BackingFile = "base.raw", BackingFormat = ImageFormat.Raw }, ct))
        {
            reference = await ImageContent.ReadAllAsync(image);
            await TidemarkToQemuTests.RandomOpsAsync(image, reference, new Random(9), 60, ct);
            await image.WriteZeroesAsync(0, 1 << 20, WriteFlags.MayUnmap, ct);
            reference.AsSpan(0, 1 << 20).Clear();
        }

        await ImageContent.AssertCleanAsync(top);
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(top, dir));
    }

    [Fact]
    public async Task DirtyOrCorruptImage_IsRefusedReadWrite_ButReadsReadOnly()
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var path = dir.File("d.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "1M");
        await using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.Seek(79, SeekOrigin.Begin);
            f.WriteByte(0x02); // incompatible bit 1: corrupt
        }

        var e = await Assert.ThrowsAsync<StorageException>(async () => await Qcow2Image.OpenAsync(path, readOnly: false, ct));
        Assert.Equal(StorageErrorReason.ReadOnly, e.Reason);
        Assert.Contains("marked corrupt", e.Message, StringComparison.Ordinal);
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, ct);
        Assert.True(image.IsMarkedCorrupt);
    }
}
