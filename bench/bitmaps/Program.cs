using System.Diagnostics;
using System.Globalization;
using Tidemark.Bench.Bitmaps;

// Usage: Tidemark.Bench.Bitmaps <path of the tidemark executable>
// Prints one table; where QEMU has the same operation, its figure comes from the same run on
// the same image, and the ratio is QEMU's time over Tidemark's (above 1: Tidemark is faster).
if (args.Length < 1 || !File.Exists(args[0]))
{
    Console.Error.WriteLine("usage: Tidemark.Bench.Bitmaps TIDEMARK (run bench/bitmaps/run)");
    return 2;
}

var dir = Path.Combine(Path.GetTempPath(), $"tidemark-bench-bitmaps-{Environment.ProcessId}");
Directory.CreateDirectory(dir);
try
{
    var rows = new List<Row>();
    rows.AddRange(InMemoryRows.Run());
    rows.AddRange(await ImageRows.RunAsync(dir, args[0]));

    Console.WriteLine($"{"operation",-62} {"Tidemark",12} {"QEMU",12} {"QEMU/Tidemark",14}");
    foreach (var row in rows)
    {
        var qemu = row.Qemu is { } q ? Format(q) : "-";
        var ratio = row.Qemu is { } r ? (r.TotalMilliseconds / row.Tidemark.TotalMilliseconds).ToString("F2", CultureInfo.InvariantCulture) : "-";
        Console.WriteLine($"{row.Name,-62} {Format(row.Tidemark),12} {qemu,12} {ratio,14}");
    }

    return 0;
}
finally
{
    Directory.Delete(dir, recursive: true);
}

static string Format(TimeSpan t) => t.TotalMilliseconds >= 1
    ? t.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture) + " ms"
    : (t.TotalMilliseconds * 1000).ToString("F1", CultureInfo.InvariantCulture) + " µs";

namespace Tidemark.Bench.Bitmaps
{
    /// <summary>One line of the table: the median times of Tidemark and, where it has the same operation, QEMU.</summary>
    internal sealed record Row(string Name, TimeSpan Tidemark, TimeSpan? Qemu = null);

    /// <summary>Median of repeated timings, after one warm-up run.</summary>
    internal static class Timing
    {
        public static TimeSpan Median(int repeats, Action action)
        {
            action();
            var samples = new List<TimeSpan>();
            for (var i = 0; i < repeats; i++)
            {
                var watch = Stopwatch.StartNew();
                action();
                samples.Add(watch.Elapsed);
            }

            samples.Sort();
            return samples[samples.Count / 2];
        }

        public static async Task<TimeSpan> MedianAsync(int repeats, Func<Task> action)
        {
            await action();
            var samples = new List<TimeSpan>();
            for (var i = 0; i < repeats; i++)
            {
                var watch = Stopwatch.StartNew();
                await action();
                samples.Add(watch.Elapsed);
            }

            samples.Sort();
            return samples[samples.Count / 2];
        }
    }
}
