using Tidemark.Storage.Qcow2;
using Tidemark.Testing;
using static Tidemark.Storage.Tests.Qcow2.ImageBytes;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>Malformed images are refused with a StorageException naming the field and offset.</summary>
public sealed class BadImageTests
{
    private static async Task<string> QemuImageAsync(TempDirectory dir, string options = "cluster_size=65536", string size = "16M", params string[] writes)
    {
        var path = dir.File($"img-{Guid.NewGuid():N}.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", options, path, size);
        if (writes.Length > 0)
        {
            await Peer.RunCheckedAsync("qemu-io", ["-f", "qcow2", .. writes.SelectMany(w => new[] { "-c", w }), path]);
        }

        return path;
    }

    private static async Task<StorageException> OpenFailsAsync(string path, StorageErrorReason reason, params string[] named)
    {
        var e = await Assert.ThrowsAsync<StorageException>(async () =>
        {
            await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken);
            await ImageContent.ReadAllAsync(image);
        });
        Assert.Equal(reason, e.Reason);
        foreach (var n in named)
        {
            Assert.Contains(n, e.Message, StringComparison.Ordinal);
        }

        return e;
    }

    public static TheoryData<string, long, byte[], StorageErrorReason, string> HeaderCorruptions => new()
    {
        { "MalformedHeader_BadMagic", 0, U32(0x51464900), StorageErrorReason.NotAnImage, "magic" },
        { "MalformedHeader_Version4", 4, U32(4), StorageErrorReason.UnsupportedFeature, "version 4" },
        { "MalformedHeader_ClusterBits8", 20, U32(8), StorageErrorReason.InvalidHeader, "cluster_bits 8" },
        { "MalformedHeader_ClusterBits22", 20, U32(22), StorageErrorReason.InvalidHeader, "cluster_bits 22" },
        { "MalformedHeader_Encrypted", 32, U32(1), StorageErrorReason.UnsupportedFeature, "crypt_method" },
        { "MalformedHeader_L1TooSmall", 36, U32(0), StorageErrorReason.InvalidHeader, "l1_size 0 is too small" },
        { "MalformedHeader_L1Huge", 36, U32(0x10000000), StorageErrorReason.LimitExceeded, "l1_size" },
        { "MalformedHeader_L1Unaligned", 40, U64(0x30008), StorageErrorReason.InvalidHeader, "l1_table_offset" },
        { "MalformedHeader_L1PastEnd", 40, U64(0x7fff0000), StorageErrorReason.Corrupt, "l1_table_offset" },
        { "MalformedHeader_RefcountTableAtZero", 48, U64(0), StorageErrorReason.InvalidHeader, "refcount_table_offset" },
        { "MalformedHeader_RefcountTableClustersZero", 56, U32(0), StorageErrorReason.InvalidHeader, "refcount_table_clusters" },
        { "MalformedHeader_RefcountTableHuge", 56, U32(0x1000), StorageErrorReason.LimitExceeded, "refcount_table_clusters" },
        { "MalformedHeader_TooManySnapshots", 60, U32(0x100000), StorageErrorReason.LimitExceeded, "nb_snapshots" },
        { "MalformedHeader_UnknownIncompatibleBit", 72, U64(1UL << 40), StorageErrorReason.UnsupportedFeature, "incompatible feature bit 40" },
        { "MalformedHeader_CompressionBitWithoutType", 72, U64(1UL << 3), StorageErrorReason.InvalidHeader, "compression_type" },
        { "MalformedHeader_RefcountOrder7", 96, U32(7), StorageErrorReason.InvalidHeader, "refcount_order 7" },
        { "MalformedHeader_HeaderLengthShort", 100, U32(100), StorageErrorReason.InvalidHeader, "header_length 100" },
        { "MalformedHeader_HeaderLengthPastCluster", 100, U32(0x20000), StorageErrorReason.InvalidHeader, "header_length" },
        { "MalformedHeader_SizeAbsurd", 24, U64(ulong.MaxValue), StorageErrorReason.LimitExceeded, "size" },
        { "MalformedHeader_BackingNameOutsideCluster", 8, U64(0xfff0), StorageErrorReason.InvalidHeader, "backing file name" },
        { "MalformedExtension_LengthPastArea", 116, U32(0x10000), StorageErrorReason.InvalidHeader, "header extension 0x6803f857" },
    };

    [Theory]
    [MemberData(nameof(HeaderCorruptions))]
    public async Task MalformedHeader_IsRefusedNamingTheField(string name, long offset, byte[] bytes, StorageErrorReason reason, string field)
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);
        if (name.Contains("BackingName", StringComparison.Ordinal))
        {
            await PatchAsync(path, 16, U32(100));
        }

        await PatchAsync(path, offset, bytes);
        var e = await OpenFailsAsync(path, reason, field);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MalformedHeader_UnknownIncompatibleBit_NamedFromFeatureTable()
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);

        // The feature table QEMU writes starts at 112 + 8; rename entry 0 to describe incompatible bit 9.
        await PatchAsync(path, 120, [0, 9, .. "frobnication"u8.ToArray()]);
        await PatchAsync(path, 72, U64(1UL << 9));
        await OpenFailsAsync(path, StorageErrorReason.UnsupportedFeature, "'frobnication' (incompatible bit 9)", "offset 72");
    }

    [Fact]
    public async Task MalformedHeader_Truncated()
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);
        await using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.SetLength(40);
        }

        await OpenFailsAsync(path, StorageErrorReason.NotAnImage, "too short");
    }

    [Fact]
    public async Task MalformedHeader_DuplicateExtension()
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);

        // Two 8-byte "backing format" extensions one after the other, then the end marker.
        await PatchAsync(path, 112, [.. U32(0xe2792aca), .. U32(3), .. "raw"u8.ToArray(), 0, 0, 0, 0, 0, .. U32(0xe2792aca), .. U32(3), .. "raw"u8.ToArray(), 0, 0, 0, 0, 0, .. U64(0)]);
        await OpenFailsAsync(path, StorageErrorReason.InvalidHeader, "appears twice", "offset 128");
    }

    [Theory]
    [InlineData(0x8000000000000000UL | 0x7fff0000, "past the end of the file")]
    [InlineData(0x8000000000000000UL | 0x10, "reserved bits")]
    [InlineData(0x8000000000000000UL | 0x200, "unaligned")]
    public async Task MalformedL1Entry_IsRefused(ulong entry, string what)
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);
        await PatchAsync(path, 0x30000, U64(entry));
        await OpenFailsAsync(path, StorageErrorReason.Corrupt, "L1 entry 0 at offset 196608", what);
    }

    [Theory]
    [InlineData(0x8000000000000000UL | 0x7fff0000, "past the end of the file")]
    [InlineData(0x8000000000000000UL | 0x200, "cluster allocation offset 0x200 unaligned")]
    [InlineData(0x8000000000000000UL | 0x50200, "cluster allocation offset 0x50200 unaligned")]
    public async Task MalformedL2Entry_IsRefusedOnRead(ulong entry, string what)
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir, writes: "write 0 64k");

        // qemu-img create: L1 at 0x30000; the first write puts the L2 table at 0x40000.
        await PatchAsync(path, 0x40008, U64(entry));
        await OpenFailsAsync(path, StorageErrorReason.Corrupt, "L2 entry 1 of L1 entry 0", what);
    }

    [Fact]
    public async Task MalformedRefcountTableEntry_PastEnd()
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir);
        await PatchAsync(path, 0x10000, U64(0x7fff0000));
        await OpenFailsAsync(path, StorageErrorReason.Corrupt, "refcount table entry 0 at offset 65536", "past the end");
    }

    [Fact]
    public async Task RefcountOverflow_IsRefusedNamingTheCluster()
    {
        using var dir = new TempDirectory();
        var path = await QemuImageAsync(dir, "refcount_bits=1", "16M");
        var file = HostFile.Open(path, readOnly: true);
        await using (file)
        {
            var cluster0 = new byte[65536];
            await file.ReadAsync(0, cluster0, TestContext.Current.CancellationToken);
            var header = Qcow2Header.Parse(cluster0, file.Length, path);
            var table = await RefcountTable.LoadAsync(file, header, (_, _, _) => ValueTask.CompletedTask, TestContext.Current.CancellationToken);

            // The header's cluster already has refcount 1, the most a 1-bit refcount holds.
            var e = await Assert.ThrowsAsync<StorageException>(async () => await table.ChangeAsync(0, +1, TestContext.Current.CancellationToken));
            Assert.Equal(StorageErrorReason.LimitExceeded, e.Reason);
            Assert.Contains("refcount of cluster 0 would overflow 1-bit refcounts", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CompressedWrites_WithOneBitRefcounts_NeverShareACluster(bool zstd)
    {
        using var dir = new TempDirectory();
        var ct = TestContext.Current.CancellationToken;
        var path = dir.File("c1.qcow2");
        var content = new byte[2 << 20];
        for (var i = 0; i < content.Length; i++)
        {
            content[i] = (byte)(i / 4096);
        }

        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = content.Length, RefcountBits = 1, Zstd = zstd }, ct))
        {
            for (var at = 0; at < content.Length; at += 65536)
            {
                await image.WriteCompressedAsync(at, content.AsMemory(at, 65536), ct);
            }
        }

        var check = await ImageContent.AssertCleanAsync(path);
        Assert.Equal(32, check.GetProperty("compressed-clusters").GetInt64());
        ImageContent.AssertSame(content, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Fact]
    public async Task BackingChainLoop_AndMissingBacking_AreRefused()
    {
        using var dir = new TempDirectory();
        var a = dir.File("a.qcow2");
        var b = dir.File("b.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", a, "1M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M");
        await OpenFailsAsync(a, StorageErrorReason.BackingChain, "loop");
        var self = dir.File("self.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", "self.qcow2", "-F", "qcow2", self, "1M");
        await OpenFailsAsync(self, StorageErrorReason.BackingChain, "loop");
        var orphan = dir.File("orphan.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", orphan, "1M");
        await OpenFailsAsync(orphan, StorageErrorReason.BackingChain, "gone.qcow2", "No such file");
    }
}
