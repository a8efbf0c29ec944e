using System.Diagnostics;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Bench.Bitmaps;

/// <summary>
/// The same bitmap merge on a 1 TiB qcow2 image by <c>qemu-img bitmap --merge</c> and by
/// Tidemark: open read-write (loading every bitmap and marking it IN_USE), merge, store every
/// bitmap and clear IN_USE at close. Both tools run on the same file in turn.
/// </summary>
internal static class ImageRows
{
    private const int Repeats = 7;

    public static async Task<IEnumerable<Row>> RunAsync(string dir, string tidemark)
    {
        var image = Path.Combine(dir, "big.qcow2");
        await RunProcessAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "1T");
        var random = new Random(7);
        await using (var qcow2 = await Qcow2Image.OpenAsync(image, readOnly: false))
        {
            var dense = await qcow2.Bitmaps.AddAsync("dense");
            var sparse = await qcow2.Bitmaps.AddAsync("sparse");
            await qcow2.Bitmaps.AddAsync("target");
            for (var bit = 0L; bit < dense.Bitmap.BitCount; bit++)
            {
                if (random.Next(2) == 0)
                {
                    dense.Bitmap.SetRange(bit << 16, 1);
                }
            }

            for (var i = 0; i < 1000; i++)
            {
                sparse.Bitmap.SetRange(random.NextInt64(qcow2.VirtualSize), random.Next(1, 1 << 20));
            }
        }

        await RunProcessAsync("qemu-img", "check", "-q", image);
        var rows = new List<Row>();
        foreach (var source in new[] { "sparse", "dense" })
        {
            var qemu = await Timing.MedianAsync(Repeats, () => RunProcessAsync("qemu-img", "bitmap", "--merge", source, image, "target"));
            var cli = await Timing.MedianAsync(Repeats, () => RunProcessAsync(tidemark, "image", "bitmap", "--merge", source, image, "target"));
            var library = await Timing.MedianAsync(Repeats, async () =>
            {
                await using var qcow2 = await Qcow2Image.OpenAsync(image, readOnly: false);
                await qcow2.Bitmaps.MergeAsync("target", qcow2.Bitmaps.Get(source).Bitmap);
            });
            rows.Add(new Row($"1 TiB image, 3 bitmaps: merge {source} (tidemark CLI process)", cli, qemu));
            rows.Add(new Row($"1 TiB image, 3 bitmaps: merge {source} (Tidemark library)", library, qemu));
        }

        await RunProcessAsync("qemu-img", "check", "-q", image);

        // What the CLI rows pay before touching the image: starting the process.
        var startQemu = await Timing.MedianAsync(Repeats, () => RunProcessAsync("qemu-img", "--version"));
        var startTidemark = await Timing.MedianAsync(Repeats, () => RunProcessAsync(tidemark, "--version"));
        rows.Add(new Row("process start-up only (--version)", startTidemark, startQemu));
        return rows;
    }

    private static async Task RunProcessAsync(string program, params string[] arguments)
    {
        var info = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
        var stderr = process.StandardError.ReadToEndAsync();
        _ = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited {process.ExitCode}: {await stderr}");
        }
    }
}
