using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>Images QEMU made and wrote read back byte-identically through Tidemark.</summary>
public sealed class QemuToTidemarkTests
{
    private static readonly string[] GuestWrites =
    [
        "write -P 0xab 0 64k",
        "write -P 0x11 100k 3k",
        "write -z 2M 128k",
        "write -P 0x22 2M 4k",
        "write -z -u 3M 64k",
        "write -P 0x33 5000k 1k",
        "discard 0 64k",
        "write -P 0x44 7M 1M",
    ];

    [Theory]
    [InlineData("cluster_size=512")]
    [InlineData("cluster_size=4096")]
    [InlineData("cluster_size=65536")]
    [InlineData("cluster_size=2097152")]
    [InlineData("compat=0.10")]
    [InlineData("refcount_bits=1")]
    [InlineData("refcount_bits=64")]
    [InlineData("extended_l2=on,cluster_size=131072")]
    [InlineData("preallocation=metadata")]
    public async Task QemuWrittenImage_ReadsBackIdentically(string options)
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", options, path, "9M");
        var args = new List<string> { "-f", "qcow2" };
        foreach (var w in GuestWrites)
        {
            args.Add("-c");
            args.Add(w);
        }

        args.Add(path);
        (await Peer.RunAsync("qemu-io", args)).EnsureSuccess();

        var expected = await ImageContent.QemuReadAllAsync(path, dir);
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken);
        ImageContent.AssertSame(expected, await ImageContent.ReadAllAsync(image));
    }

    [Theory]
    [InlineData("zlib", 65536)]
    [InlineData("zstd", 65536)]
    [InlineData("zlib", 4096)]
    [InlineData("zstd", 2097152)]
    public async Task CompressedImage_ReadsBackIdentically(string compression, int clusterSize)
    {
        using var dir = new TempDirectory();
        var raw = dir.File("src.raw");
        var content = new byte[5 << 20];
        var random = new Random(7);
        for (var i = 0; i < content.Length; i += 4096)
        {
            // Compressible text-like blocks, random blocks and zero blocks mixed.
            switch ((i / 4096) % 3)
            {
                case 0:
                    content.AsSpan(i, 4096).Fill((byte)('a' + (i % 26)));
                    break;
                case 1:
                    random.NextBytes(content.AsSpan(i, 4096));
                    break;
            }
        }

        await File.WriteAllBytesAsync(raw, content, TestContext.Current.CancellationToken);
        var path = dir.File("c.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", $"compression_type={compression},cluster_size={clusterSize}", raw, path);

        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, TestContext.Current.CancellationToken);
        ImageContent.AssertSame(content, await ImageContent.ReadAllAsync(image));
    }

    [Fact]
    public async Task BackingChain_WithRelativeNamesAndFormats_ReadsLikeQemu()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("sub"));
        var raw = dir.File("sub/base.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", raw, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x01 0 4M", raw);
        var mid = dir.File("sub/mid.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x02 64k 64k", "-c", "write -z 1M 64k", mid);
        var top = dir.File("top.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", "sub/mid.qcow2", "-F", "qcow2", top, "6M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x03 70k 2k", "-c", "write -P 0x04 5M 64k", top);

        var expected = await ImageContent.QemuReadAllAsync(top, dir);
        await using var image = await Qcow2Image.OpenAsync(top, readOnly: true, TestContext.Current.CancellationToken);
        Assert.Equal("sub/mid.qcow2", image.BackingFileName);
        ImageContent.AssertSame(expected, await ImageContent.ReadAllAsync(image));
    }
}
