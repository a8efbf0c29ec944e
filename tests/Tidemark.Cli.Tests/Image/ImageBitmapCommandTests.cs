using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image bitmap</c> against <c>qemu-img bitmap</c>: one script of operations, guest
/// writes (qemu-io) and mistakes runs on two copies of the same image, one through each tool.
/// Every step must give the same exit status and error line, and in the end QEMU must see the
/// same bitmaps, flags and bits in both images, both clean.
/// </summary>
public sealed class ImageBitmapCommandTests
{
    // "io ..." lines are qemu-io commands run on both images; the rest are bitmap command lines.
    // FILE and BASE stand for each side's image and its backing file.
    private static readonly string[] Script =
    [
        "--add FILE b0",
        "--add -g 128k FILE wide",
        "--add -g 512 --disable FILE fine",
        "io write -P 0x11 0 4k",
        "--enable FILE fine",
        "io write -z 1M 192k",
        "--disable FILE wide",
        "io write 5M 1k",
        "--add FILE tmp",
        "--merge wide FILE tmp",
        "--merge fine FILE tmp",
        "--clear FILE b0",
        "io discard 7M 64k",
        "--remove --add FILE fine",
        "--add --merge bb -b BASE -F qcow2 FILE frombase",
        // Mistakes, each refused the same way.
        "--add FILE tmp",
        "--merge nope FILE tmp",
        "--remove FILE nope",
        "--clear FILE nope",
        "FILE b0",
        "-g 64k --clear FILE b0",
        "-b BASE --clear FILE b0",
        "-F qcow2 --clear FILE b0",
        "--add -g 1000 FILE g",
        "--add -g 256 FILE g",
        "--remove FILE wide",
        "io write 9M 64k",
    ];

    [Fact]
    public async Task Script_GivesWhatQemuImgBitmapGives()
    {
        using var dir = new TempDirectory();
        var sides = new Dictionary<string, (string File, string Base)>();
        foreach (var side in new[] { "qemu", "tidemark" })
        {
            var baseFile = dir.File($"{side}-base.qcow2");
            var file = dir.File($"{side}.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", baseFile, "16M");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "256k", baseFile, "bb");
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 3M 4k", "-c", "write 12M 1M", baseFile);
            await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", baseFile, "-F", "qcow2", file, "16M");
            sides[side] = (file, baseFile);
        }

        foreach (var step in Script)
        {
            if (step.StartsWith("io ", StringComparison.Ordinal))
            {
                foreach (var (file, _) in sides.Values)
                {
                    await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", step[3..], file);
                }

                continue;
            }

            var (qemuFile, qemuBase) = sides["qemu"];
            var qemu = await Peer.RunAsync("qemu-img", ["bitmap", .. Arguments(step, qemuFile, qemuBase)]);
            var (file2, base2) = sides["tidemark"];
            var run = await CliRun.RunAsync(["image", "bitmap", .. Arguments(step, file2, base2)]);

            Assert.Equal((step, qemu.ExitCode), (step, run.ExitCode));
            Assert.Equal((step, qemu.Stderr.Replace("qemu-img: ", "error: ", StringComparison.Ordinal).Trim()), (step, run.Stderr.Trim()));
            Assert.Equal("", run.Stdout);
        }

        var bitmaps = await QemuBitmapsAsync(sides["qemu"].File);
        Assert.Equal(bitmaps, await QemuBitmapsAsync(sides["tidemark"].File));
        Assert.Equal(["b0", "tmp", "fine", "frombase"], bitmaps.Select(b => b.Name));
        foreach (var (file, _) in sides.Values)
        {
            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", file]);
            Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        }

        var maps = new Dictionary<string, List<List<DirtyRun>>>();
        foreach (var (side, (file, _)) in sides)
        {
            await using var export = await QemuNbdExport.StartAsync(file, dir.File($"{side}.sock"), [.. bitmaps.Select(b => b.Name)]);
            maps[side] = [];
            foreach (var (name, _, _) in bitmaps)
            {
                maps[side].Add(await export.DirtyMapAsync(name));
            }
        }

        Assert.Equal(maps["qemu"], maps["tidemark"]);
        Assert.Contains(maps["qemu"], m => m.Any(r => r.Dirty));
    }

    [Fact]
    public async Task InconsistentBitmap_CanOnlyBeRemoved()
    {
        using var dir = new TempDirectory();
        var file = dir.File("crash.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", file, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", file, "b0");
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "abort", file]);

        foreach (var op in new[] { "--clear", "--enable", "--disable" })
        {
            var run = await CliRun.RunAsync("image", "bitmap", op, file, "b0");
            Assert.Equal(1, run.ExitCode);
            Assert.StartsWith($"error: Operation {op[2..]} on bitmap b0 failed: Bitmap 'b0' is inconsistent and cannot be used", run.Stderr, StringComparison.Ordinal);
        }

        Assert.Equal(0, (await CliRun.RunAsync("image", "bitmap", "--remove", file, "b0")).ExitCode);
        Assert.Empty(await QemuBitmapsAsync(file));
        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", file]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
    }

    private static string[] Arguments(string step, string file, string baseFile) =>
        step.Split(' ').Select(a => a == "FILE" ? file : a == "BASE" ? baseFile : a).ToArray();

    private static async Task<List<(string Name, long Granularity, string Flags)>> QemuBitmapsAsync(string file)
    {
        var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", file)).RootElement;
        var data = info.GetProperty("format-specific").GetProperty("data");
        return data.TryGetProperty("bitmaps", out var list)
            ? list.EnumerateArray().Select(b => (b.GetProperty("name").GetString()!, b.GetProperty("granularity").GetInt64(), string.Join(',', b.GetProperty("flags").EnumerateArray().Select(f => f.GetString())))).ToList()
            : [];
    }
}
