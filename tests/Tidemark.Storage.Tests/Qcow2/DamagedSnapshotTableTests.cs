using System.Buffers.Binary;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;
using static Tidemark.Storage.Tests.Qcow2.ImageBytes;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Internal snapshot tables damaged as the qcow2 fuzz harness damaged them
/// (<c>bench/fuzz/findings/qcow2/crashes-20261130T1349-*</c>): the check stops where qemu-img's
/// stops and says why, opening refuses what QEMU refuses in QEMU's words, a repair writes
/// nothing, and every failure is a <see cref="StorageException"/>.
/// </summary>
public sealed class DamagedSnapshotTableTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A qemu-img image with 4 KiB clusters and one internal snapshot "s1"; returns where its table entry starts.</summary>
    private static async Task<(string Path, long Entry)> SnapshotImageAsync(TempDirectory dir)
    {
        var path = dir.File("s.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "1M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", path);
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "s1", path);
        var header = await File.ReadAllBytesAsync(path, Ct);
        return (path, (long)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(64)));
    }

    /// <summary>A repair that cannot complete its check fails and leaves the file byte-identical.</summary>
    private static async Task AssertRepairFailsAndWritesNothingAsync(string path)
    {
        var before = await HashAsync(path);
        var repaired = await Qcow2Repair.RunAsync(path, Qcow2RepairMode.All, Ct);
        Assert.Equal(1, repaired.ExitCode);
        Assert.Equal("File too large", repaired.Failure);
        Assert.Equal(before, await HashAsync(path));
    }

    [Theory]
    [InlineData(0xe8ffffff00000000)] // top bit set: negative to a signed reader (the fuzz finding)
    [InlineData(0x7fffffffffff0000)] // below 2^63, but past the last request QEMU's block layer takes
    public async Task SnapshotL1PastTheLargestFile_CheckFailsAsQemuImgCheckFails(ulong l1Offset)
    {
        using var dir = new TempDirectory();
        var (path, entry) = await SnapshotImageAsync(dir);
        await PatchAsync(path, entry, U64(l1Offset));

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        var result = await Qcow2Check.RunAsync(path, Ct);
        Assert.Equal(qemu.ExitCode, result.ExitCode);
        Assert.Contains("Check failed", qemu.Stderr, StringComparison.Ordinal);
        Assert.Equal("File too large", result.Failure);
        Assert.Contains($"ERROR snapshot L1 table at offset 0x{l1Offset:x} (+8) is past the largest possible file", result.Messages);

        // QEMU opens and reads the image (the snapshot is not used); so does Tidemark.
        await Peer.RunCheckedAsync("qemu-img", "info", path);
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: true, Ct))
        {
            Assert.Equal(1, image.SnapshotCount);
        }

        // qemu-img check -r all fails the same way and writes nothing either.
        var copy = dir.File("qemu-repair.qcow2");
        File.Copy(path, copy);
        Assert.Equal(1, (await Peer.RunAsync("qemu-img", ["check", "-r", "all", copy])).ExitCode);
        Assert.Equal(await HashAsync(path), await HashAsync(copy));
        await AssertRepairFailsAndWritesNothingAsync(path);
    }

    [Fact]
    public async Task SnapshotExtraDataOver1024Bytes_RefusedAsQemuRefusesIt()
    {
        using var dir = new TempDirectory();
        var (path, entry) = await SnapshotImageAsync(dir);
        await PatchAsync(path, entry + 36, U32(437918234));

        var info = await Peer.RunAsync("qemu-img", ["info", path]);
        Assert.NotEqual(0, info.ExitCode);
        Assert.Contains("Too much extra metadata in snapshot table entry 0", info.Stderr, StringComparison.Ordinal);
        var e = await Assert.ThrowsAsync<StorageException>(async () => await Qcow2Image.OpenAsync(path, readOnly: true, Ct));
        Assert.Equal(StorageErrorReason.LimitExceeded, e.Reason);
        Assert.StartsWith($"{path}: Too much extra metadata in snapshot table entry 0 ", e.Message, StringComparison.Ordinal);

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        var result = await Qcow2Check.RunAsync(path, Ct);
        Assert.Equal(qemu.ExitCode, result.ExitCode);
        Assert.Contains("qemu-img: ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry 0", qemu.Stderr, StringComparison.Ordinal);
        Assert.StartsWith("ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry 0 ", Assert.Single(result.Messages), StringComparison.Ordinal);
        Assert.Equal("File too large", result.Failure);
        Assert.Contains("Check failed: File too large", qemu.Stderr, StringComparison.Ordinal);

        // qemu-img check -r all drops the extra data and rewrites the table; Tidemark does not
        // rewrite snapshot tables, so its repair refuses and leaves the file as it was.
        await AssertRepairFailsAndWritesNothingAsync(path);
    }

    [Fact]
    public async Task SnapshotL1Unaligned_IsACorruptionInQemuImgsWords()
    {
        using var dir = new TempDirectory();
        var (path, entry) = await SnapshotImageAsync(dir);
        var l1 = BinaryPrimitives.ReadUInt64BigEndian((await File.ReadAllBytesAsync(path, Ct)).AsSpan((int)entry));
        await PatchAsync(path, entry, U64(l1 + 8));

        var qemu = await Peer.RunAsync("qemu-img", ["check", path]);
        var result = await Qcow2Check.RunAsync(path, Ct);
        Assert.Equal(2, qemu.ExitCode);
        Assert.Equal(qemu.ExitCode, result.ExitCode);
        var message = $"ERROR snapshot 1 (s1) l1_offset=0x{l1 + 8:x}: L1 table is not cluster aligned; snapshot table entry corrupted";
        Assert.Contains(message, qemu.Stderr, StringComparison.Ordinal);
        Assert.Contains(message, result.Messages);
    }
}
