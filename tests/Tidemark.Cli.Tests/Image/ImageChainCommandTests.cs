using System.Text.Json.Nodes;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image rebase</c>, <c>commit</c> and <c>convert -B/-n/--target-is-zero/--bitmaps</c>
/// against qemu-img 7.2: one transcript of steps run on two copies of the same directory of
/// images, one through each tool. Every step must give the same exit status, output and error
/// lines; in the end every image reads the same through both tools' results
/// (<c>qemu-img compare</c>), passes <c>qemu-img check</c>, and shows the same
/// <c>qemu-img info --output=json</c>.
/// </summary>
public sealed class ImageChainCommandTests
{
    // DIR is each side's directory, EMPTY an empty argument (-b "").
    private static readonly string[] Steps =
    [
        "convert -O qcow2 --target-is-zero DIR/base.qcow2 DIR/o1.qcow2",
        "convert -O qcow2 -B base.qcow2 DIR/mid.qcow2 DIR/o2.qcow2",
        "convert -O raw -B base.qcow2 -F qcow2 DIR/mid.qcow2 DIR/o3.raw",
        "convert -n -O qcow2 DIR/base.qcow2 DIR/small.qcow2",
        "convert -n -O qcow2 DIR/base.qcow2 DIR/missing.qcow2",
        "convert --bitmaps -O raw DIR/base.qcow2 DIR/o4.raw",
        "convert --bitmaps -O qcow2 DIR/v2.qcow2 DIR/o5.qcow2",
        "convert --bitmaps -O qcow2 -o compat=0.10 DIR/base.qcow2 DIR/o6.qcow2",
        "convert --bitmaps -O qcow2 DIR/base.qcow2 DIR/bitmaps.qcow2",
        "convert -O qcow2 -B mid.qcow2 -F qcow2 DIR/top.qcow2 DIR/backed.qcow2",
        "convert -n -O qcow2 DIR/top.qcow2 DIR/existing.qcow2",
        "convert -n --target-is-zero -O qcow2 DIR/top.qcow2 DIR/zero.qcow2",
        "rebase DIR/top.qcow2",
        "rebase -b x -F foo DIR/top.qcow2",
        "rebase -u -b other.qcow2 DIR/top.qcow2",
        "rebase -b missing.qcow2 -F qcow2 DIR/top.qcow2",
        "rebase -f raw -b base.qcow2 -F qcow2 DIR/disk.raw",
        "rebase -b base.qcow2 -F qcow2 DIR/top.qcow2",
        "rebase -u -b mid.qcow2 -F qcow2 DIR/top.qcow2",
        "commit -b other.qcow2 DIR/top.qcow2",
        "commit DIR/missing.qcow2",
        "commit DIR/top.qcow2",
        "commit -d DIR/top2.qcow2",
        "rebase -b EMPTY DIR/top.qcow2",
        "commit DIR/top.qcow2",
    ];

    [Fact]
    public async Task Transcript_GivesWhatQemuImgGives()
    {
        using var dir = new TempDirectory();
        var original = Path.Combine(dir.Path, "original");
        Directory.CreateDirectory(original);
        string P(string name) => Path.Combine(original, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", P("base.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", P("base.qcow2"), "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", P("base.qcow2"), "b1");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -c -P 0x11 0 1M", "-c", "write -P 0x12 3M 2M", P("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", P("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 512k 1M", "-c", "write -z 3M 512k", P("mid.qcow2"));
        foreach (var top in new[] { "top.qcow2", "top2.qcow2" })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", P(top));
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x31 1M 1M", "-c", "write -z 4M 64k", "-c", "write -P 0x32 7M 100k", P(top));
        }

        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", P("other.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", P("v2.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", P("small.qcow2"), "1M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", P("existing.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 8M", P("existing.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", P("zero.qcow2"), "8M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", P("disk.raw"), "1M");

        var qemu = Copy(original, Path.Combine(dir.Path, "qemu"));
        var tidemark = Copy(original, Path.Combine(dir.Path, "tidemark"));
        foreach (var step in Steps)
        {
            var q = await Peer.RunAsync("qemu-img", Arguments(step, qemu));
            var t = await CliRun.RunAsync(["image", .. Arguments(step, tidemark)]);
            Assert.Equal((step, q.ExitCode), (step, t.ExitCode));
            Assert.Equal((step, Normalize(q.Stderr, qemu)), (step, Normalize(t.Stderr, tidemark)));
            Assert.Equal((step, q.Stdout), (step, t.Stdout));
        }

        foreach (var file in Directory.GetFiles(qemu).Select(Path.GetFileName))
        {
            var a = Path.Combine(qemu, file!);
            var b = Path.Combine(tidemark, file!);
            Assert.True(File.Exists(b), $"{file} exists after qemu-img's steps, not after Tidemark's");
            if (!file!.EndsWith(".qcow2", StringComparison.Ordinal))
            {
                continue;
            }

            await Peer.RunCheckedAsync("qemu-img", "compare", a, b);
            await Peer.RunCheckedAsync("qemu-img", "check", b);
            Assert.Equal((file, await InfoAsync(a)), (file, await InfoAsync(b)));
        }
    }

    private static string Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        return to;
    }

    private static string[] Arguments(string step, string dir)
        => [.. step.Split(' ').Select(a => a == "EMPTY" ? string.Empty : a.Replace("DIR", dir, StringComparison.Ordinal))];

    // qemu-img prefixes errors with its name, Tidemark with "error:"; qemu-img's usage hint
    // after a command-line error has no counterpart.
    private static string Normalize(string stderr, string dir)
        => string.Join('\n', stderr.Replace("qemu-img: warning: ", "warning: ", StringComparison.Ordinal)
            .Replace("qemu-img: ", "error: ", StringComparison.Ordinal)
            .Replace(dir, "DIR", StringComparison.Ordinal)
            .Split('\n')
            .Where(l => !l.StartsWith("Try 'qemu-img --help'", StringComparison.Ordinal)))
            .Trim();

    private static async Task<string> InfoAsync(string file)
    {
        var info = JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "-U", file))!.AsObject();
        info.Remove("filename");
        info.Remove("actual-size");
        info.Remove("full-backing-filename");
        return info.ToJsonString();
    }
}
