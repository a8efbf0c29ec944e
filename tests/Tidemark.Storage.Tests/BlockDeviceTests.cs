using System.Text.Json;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests;

/// <summary>
/// Images on a block device (a loop device full of a non-zero pattern), as on a logical volume:
/// the device's size is the raw image's, nothing unwritten may be read as zeroes, the device
/// neither grows nor shrinks, and QEMU reads what Tidemark wrote there and the other way round.
/// </summary>
public sealed class BlockDeviceTests
{
    private const long DeviceSize = 64L << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Raw_IsTheWholeDevice_AsQemuSeesIt()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, DeviceSize);
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "-f", "raw", device.Path));
        Assert.Equal(DeviceSize, info.RootElement.GetProperty("virtual-size").GetInt64());

        await using var image = RawImage.Open(device.Path, readOnly: false);
        Assert.Equal(DeviceSize, image.VirtualSize);

        // SEEK_DATA cannot tell holes on a device: all data, as qemu-img map reports it.
        var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "raw", "-U", device.Path));
        var expected = map.RootElement.EnumerateArray().Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean())).ToList();
        var extents = await image.GetExtentsAsync(0, image.VirtualSize, Ct);
        Assert.Equal(expected, extents.Select(e => (e.Offset, e.Length, e.Kind == ExtentKind.Data)).ToList());
        Assert.Equal([(0L, DeviceSize, true)], expected);
    }

    [Fact]
    public async Task Raw_WritesZeroesAndDiscards_ReadBackThroughQemu()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, DeviceSize);
        await using (var image = RawImage.Open(device.Path, readOnly: false))
        {
            await image.WriteAsync(1 << 20, Enumerable.Repeat((byte)0x5a, 8192).ToArray(), WriteFlags.ForceUnitAccess, Ct);
            await image.WriteZeroesAsync(2 << 20, 64 << 10, WriteFlags.MayUnmap, Ct);
            await image.WriteZeroesAsync(3 << 20, 64 << 10, WriteFlags.None, Ct);
            await image.DiscardAsync(4 << 20, 1 << 20, Ct);
            await image.FlushAsync(Ct);
        }

        var read = await Peer.RunCheckedAsync(
            "qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 8k", "-c", "read -P 0 2M 64k", "-c", "read -P 0 3M 64k",
            "-c", $"read -P 0x{LoopDevice.Garbage:x2} 5M 64k", device.Path);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);

        // A discard of a block device is advisory (qemu's file-posix passes it down); where
        // it took effect the range reads as zeroes, elsewhere the old bytes stay.
        var discarded = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0 4M 1M", device.Path]);
        var kept = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", $"read -P 0x{LoopDevice.Garbage:x2} 4M 1M", device.Path]);
        Assert.True(!discarded.Stdout.Contains("failed", StringComparison.Ordinal) || !kept.Stdout.Contains("failed", StringComparison.Ordinal), discarded.Stdout + kept.Stdout);
    }

    [Fact]
    public async Task Resize_CannotChangeTheDevice_AsQemuImgResize()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, DeviceSize);
        // qemu-img resize asks for the exact size: a device takes neither a larger nor a smaller one.
        foreach (var size in new[] { DeviceSize * 2, DeviceSize / 2 })
        {
            var error = await Assert.ThrowsAsync<StorageException>(async () => await RawImage.ResizeAsync(device.Path, size, Ct));
            Assert.Equal(StorageErrorReason.InvalidRequest, error.Reason);
            Assert.Equal("Cannot resize device files", error.Message);
        }

        // A raw image created larger than the device (qemu-img create's truncate is not exact):
        // refused in qemu-img's words.
        var grow = Assert.Throws<StorageException>(() => RawImage.Create(device.Path, DeviceSize * 2));
        Assert.Equal($"{device.Path}: Cannot grow device files", grow.Message);

        await RawImage.ResizeAsync(device.Path, DeviceSize, Ct);
        await using var image = RawImage.Open(device.Path, readOnly: true);
        Assert.Equal(DeviceSize, image.VirtualSize);

    }

    /// <summary>
    /// qcow2 formatted onto a device full of garbage: the empty L1 table is written out (not
    /// left to the garbage), and a small write into a new cluster has the rest of the cluster
    /// zeroed, where on a new file it would read as zeroes unwritten. QEMU finds the same bytes
    /// as a file image that took the same writes, and no error.
    /// </summary>
    [Fact]
    public async Task Qcow2_CreatedOnTheDevice_QemuReadsWhatWasWritten()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, DeviceSize);
        var reference = dir.File("reference.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", reference, "32M");
        await Peer.RunCheckedAsync(
            "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 8M 4k", "-c", "write -P 0x33 9M 1M", "-c", "write -z 12M 64k", reference);

        await using (var image = await Qcow2Image.CreateAsync(device.Path, new Qcow2CreateOptions { Size = 32L << 20 }, Ct))
        {
            await image.WriteAsync(8 << 20, Enumerable.Repeat((byte)0x5a, 4096).ToArray(), cancellationToken: Ct);
            await image.WriteAsync(9 << 20, Enumerable.Repeat((byte)0x33, 1 << 20).ToArray(), cancellationToken: Ct);
            await image.WriteZeroesAsync(12 << 20, 64 << 10, WriteFlags.None, Ct);
            await image.Bitmaps.AddAsync("b0", cancellationToken: Ct);
        }

        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", device.Path);
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", device.Path, reference);
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "-f", "qcow2", device.Path));
        Assert.Equal(32L << 20, info.RootElement.GetProperty("virtual-size").GetInt64());
        var bitmaps = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps");
        Assert.Equal("b0", Assert.Single(bitmaps.EnumerateArray()).GetProperty("name").GetString());
    }

    [Fact]
    public async Task Qcow2_WrittenByQemuOnTheDevice_ReadsTheSame()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, DeviceSize);
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", device.Path, "32M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 3M", "-c", "write -P 0x11 20M 4k", device.Path);
        var raw = dir.File("qemu.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", device.Path, raw);
        var expected = await File.ReadAllBytesAsync(raw, Ct);

        await using var image = await Qcow2Image.OpenAsync(device.Path, readOnly: true, cancellationToken: Ct);
        var actual = new byte[image.VirtualSize];
        await image.ReadAsync(0, actual, Ct);
        Assert.Equal(expected, actual);
    }

    /// <summary>A qcow2 image that outgrows its device: the write fails with the host's error, what was flushed before stays, and QEMU finds no corruption.</summary>
    [Fact]
    public async Task Qcow2_PastTheEndOfTheDevice_FailsAndStaysConsistent()
    {
        using var dir = new TempDirectory();
        await using var device = await LoopDevice.AttachAsync(dir.Path, 4L << 20);
        var kept = Enumerable.Repeat((byte)0x6b, 64 << 10).ToArray();
        Exception? failure = null;
        await using (var image = await Qcow2Image.CreateAsync(device.Path, new Qcow2CreateOptions { Size = 64L << 20 }, Ct))
        {
            await image.WriteAsync(0, kept, cancellationToken: Ct);
            await image.FlushAsync(Ct);
            var chunk = Enumerable.Repeat((byte)0x33, 256 << 10).ToArray();
            try
            {
                for (var offset = 1L << 20; offset < 16L << 20; offset += chunk.Length)
                {
                    await image.WriteAsync(offset, chunk, cancellationToken: Ct);
                    await image.FlushAsync(Ct);
                }
            }
            catch (IOException e)
            {
                failure = e;
            }
        }

        Assert.NotNull(failure);
        Assert.Contains("space", failure.Message, StringComparison.OrdinalIgnoreCase);
        var check = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", device.Path]);
        Assert.True(check.ExitCode is 0 or 3, $"qemu-img check exit {check.ExitCode}: {check.Stdout}{check.Stderr}");
        var read = await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x6b 0 64k", device.Path);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);
    }
}
