using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image measure</c> against <c>qemu-img measure</c>: each command line runs
/// through both tools on the same files and must give the same exit status, the same output
/// byte for byte (human and JSON) and the same error lines. The sources have holes, zero and
/// compressed clusters, a backing chain of three, persistent bitmaps, v2 and v3 headers, and
/// an unaligned raw length; the targets vary cluster size, version, refcount width, extended
/// L2, preallocation and a backing file.
/// </summary>
public sealed class ImageMeasureCommandTests
{
    public static readonly TheoryData<string> CommandLines =
    [
        "RAW",
        "-O raw RAW",
        "-O qcow2 RAW",
        "--output=json -O qcow2 RAW",
        "-O qcow2 -o cluster_size=512 RAW",
        "-O qcow2 -o cluster_size=2M RAW",
        "-O qcow2 V3",
        "--output=json -O qcow2 V3",
        "-O qcow2 -o compat=0.10 V3",
        "-O qcow2 -o cluster_size=4k,refcount_bits=1 V3",
        "-O qcow2 -o cluster_size=512 V3",
        "-O qcow2 -o extended_l2=on,cluster_size=128k V3",
        "-O raw V3",
        "-f raw -O qcow2 V3",
        "-O qcow2 V2",
        "--output=json -O qcow2 -o refcount_bits=64 V2",
        "-O qcow2 TOP",
        "-O qcow2 -o cluster_size=4k TOP",
        "-O qcow2 -o backing_file=base.qcow2 TOP",
        "-O qcow2 -o preallocation=full TOP",
        "-O qcow2 -o preallocation=metadata TOP",
        "-O qcow2 -U TOP",
        "--size 1G",
        "--size 1000001",
        "-O qcow2 --size 1G",
        "--output=json -O qcow2 --size 1000001",
        "-O qcow2 -o cluster_size=2M --size 100T",
        "-O qcow2 -o cluster_size=512 --size 1P",
        "-O qcow2 -o cluster_size=1000 --size 1M",
        "-O qcow2 -o compat=0.10,refcount_bits=8 --size 1M",
        "-O qcow2 -o refcount_bits=3 --size 1M",
        "-O qcow2 -o compat=2 --size 1M",
        "-O qcow2 -o compat=v2 --size 1M",
        "-O qcow2 -o extended_l2=on,cluster_size=4k --size 1M",
        "-O qcow2 -o foo=1 --size 1M",
        "-O qcow2 -o cluster_size=abc --size 1M",
        "-O qcow2 -o preallocation=some --size 1M",
        "--size abc",
        "--size 1M RAW",
        "-f raw --size 1M",
        "RAW V3",
        "--output=xml RAW",
        "MISSING",
        "",
    ];

    [Theory]
    [MemberData(nameof(CommandLines))]
    public async Task Measure_GivesWhatQemuImgMeasureGives(string commandLine)
    {
        using var dir = new TempDirectory();
        await CreateSourcesAsync(dir);
        string[] args = [.. commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(a => a switch
        {
            "RAW" => dir.File("raw.img"),
            "V3" => dir.File("v3.qcow2"),
            "V2" => dir.File("v2.qcow2"),
            "TOP" => dir.File("top.qcow2"),
            "MISSING" => dir.File("missing.qcow2"),
            _ => a,
        })];

        var qemu = await Peer.RunAsync("qemu-img", ["measure", .. args]);
        var tidemark = await CliRun.RunAsync(["image", "measure", .. args]);

        Assert.Equal(qemu.ExitCode, tidemark.ExitCode);
        Assert.Equal(qemu.Stdout, tidemark.Stdout);
        Assert.Equal(Normalize(qemu.Stderr), Normalize(tidemark.Stderr));
    }

    /// <summary>The sources every command line measures, made with qemu-img and qemu-io.</summary>
    private static async Task CreateSourcesAsync(TempDirectory dir)
    {
        // Raw: data, a hole, data across a 64k boundary, and a length that is not a whole sector.
        var raw = dir.File("raw.img");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", raw, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1000k 600k", "-c", "write -P 0x33 3M 4k", raw);
        await using (var stream = File.Open(raw, FileMode.Open))
        {
            stream.SetLength((4L << 20) + 1000);
        }

        // qcow2 v3: data, zeroes over data, compressed clusters, a short write, two bitmaps.
        var v3 = dir.File("v3.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", v3, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 100k", "-c", "write -P 0x22 1M 1M", "-c", "write -z 1M 512k", "-c", "write -c -P 0x33 3M 128k", "-c", "write -P 0x44 7340544 1k", v3);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", v3, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "512", v3, "a-longer-bitmap-name");

        // qcow2 v2 with 4k clusters.
        var v2 = dir.File("v2.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4k", v2, "3M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x55 4k 10k", "-c", "write -z 2M 64k", v2);

        // A chain of three: zeroes in the middle over the base's data, a top smaller than the base.
        var options = "cluster_size=65536";
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, dir.File("base.qcow2"), "6M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "base.qcow2", "-F", "qcow2", dir.File("mid.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "mid.qcow2", "-F", "qcow2", dir.File("top.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 3M", dir.File("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -z 1M 1M", "-c", "write -P 0x22 5M 1M", dir.File("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 6M 4k", "-c", "write -z 0 64k", dir.File("top.qcow2"));
    }

    // qemu-img prefixes errors with its name, Tidemark with "error:".
    private static string Normalize(string stderr) => stderr.Replace("qemu-img: ", "error: ", StringComparison.Ordinal).Trim();
}
