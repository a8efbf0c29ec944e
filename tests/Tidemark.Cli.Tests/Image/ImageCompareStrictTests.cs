using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image compare -s</c> against <c>qemu-img compare -s</c> on the same pairs of
/// images: the same verdict line and exit status, where strict mode counts a size difference
/// and a block status difference (allocation, zero, data, the status reaching the end) as a
/// difference even when the content is the same.
/// </summary>
public sealed class ImageCompareStrictTests
{
    [Theory]
    [InlineData("copy", 65536)]
    [InlineData("zeroed", 65536)]
    [InlineData("zeroed", 4096)]
    [InlineData("bigger", 65536)]
    [InlineData("raw", 65536)]
    [InlineData("rewritten", 2097152)]
    [InlineData("differs", 65536)]
    public async Task Strict_AsQemuImg(string pair, int clusterSize)
    {
        using var dir = new TempDirectory();
        var a = dir.File("a.qcow2");
        var b = dir.File("b.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", a, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0x33 3M 8k", a);
        File.Copy(a, b);
        var formatB = "qcow2";
        switch (pair)
        {
            case "zeroed":
                // The same content, but zero clusters where A has none.
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -z 5M 64k", b);
                break;
            case "bigger":
                await Peer.RunCheckedAsync("qemu-img", "resize", "-f", "qcow2", b, "9M");
                break;
            case "raw":
                File.Delete(b);
                b = dir.File("b.img");
                formatB = "raw";
                await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", a, b);
                break;
            case "rewritten":
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", b);
                break;
            case "differs":
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x34 3M 512", b);
                break;
        }

        var q = await Peer.RunAsync("qemu-img", ["compare", "-s", "-f", "qcow2", "-F", formatB, a, b]);
        var t = await CliRun.RunAsync("image", "compare", "-s", "-f", "qcow2", "-F", formatB, a, b);
        Assert.Equal(q.ExitCode, t.ExitCode);
        Assert.Equal(q.Stdout, t.Stdout);

        // Without -s, only content counts.
        var loose = await CliRun.RunAsync("image", "compare", "-f", "qcow2", "-F", formatB, a, b);
        Assert.Equal((await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", formatB, a, b])).ExitCode, loose.ExitCode);
    }
}
