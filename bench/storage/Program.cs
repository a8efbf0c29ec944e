using System.Diagnostics;
using System.Globalization;
using System.Text;
using Tidemark.Storage.Qcow2;

// Storage benchmark: Tidemark against QEMU on the same data, same machine, same run.
// Prints one table of times and ratios (QEMU time / Tidemark time: above 1 means Tidemark is faster).
//
//   bench/storage/run [--size-gib N --runs N --dir PATH]
//
// Rows:
//   process rows: the native `tidemark` program against `qemu-img`, both as processes, start-up
//     included, as a script runs them. `--version`, `image info` and `image map` on a qcow2 of
//     SIZE (median of 21, alternating); `image convert` raw->qcow2, qcow2->raw, qcow2->qcow2 on
//     three layouts of SIZE (best of RUNS, alternating):
//       1M/1M: 1 MiB of random bytes every other MiB (half data, half holes);
//       4M/8M: 4 MiB of random bytes every 8 MiB;
//       64K scattered: 4000 writes of 64 KiB at random 64 KiB-aligned offsets.
//   ... (in-process): the 1M/1M conversions through the library in this process (no process
//     start-up), against the same qemu-img convert process.
//   4 KiB writes, qemu-img bench -w pattern: 75000 sequential 4 KiB writes into a fresh 1 GiB
//     qcow2. QEMU: `qemu-img bench -w` (queue depth 64, its own timer, no final fsync).
//     Tidemark: the same writes through Qcow2Image in-process, one at a time, timer includes
//     the final flush (fsync).
//   chain rows (`--rows chain` runs only these): a chain of SIZE, full (the 1M/1M layout as
//     qcow2) + two incrementals each rewriting 5 % of the disk in 1 MiB writes at random
//     offsets. `image commit inc2` (into inc1, inc2 emptied), `image commit -b full inc2` (both
//     incrementals into the full), safe `image rebase -b full -F qcow2 inc2` (inc1's data copied
//     into inc2) and `image convert -O qcow2 -B inc1 -F qcow2 inc2 out` (inc2's clusters only),
//     each on fresh copies of the images it changes (best of RUNS, alternating), written back
//     by sync(1) before the timer starts; every result is checked with qemu-img compare
//     against the chain before.
//   random 4 KiB writes: 20000 writes at random 4 KiB-aligned offsets of a fresh 1 GiB qcow2.
//     QEMU: qemu-io reading the commands from standard input (one at a time). Tidemark: the
//     same offsets through Qcow2Image in-process, final flush included.
//   allocating 64 KiB writes (`--rows allocating` runs only this one): what a pull backup's
//     scratch takes. 16384 writes of one 64 KiB cluster each (1 GiB) at distinct random
//     cluster-aligned offsets of a fresh 2 GiB qcow2 (64 KiB clusters), so every write
//     allocates; no flush until close (cache=unsafe). QEMU: `qemu-io -t unsafe` reading the
//     writes from standard input, timed as a process (start-up, open and close included).
//     Tidemark: Qcow2Image in-process with CacheMode.Unsafe, timer from the first write through
//     the close. Both results are checked with qemu-img check and compared with each other.
// The page cache is warm for both tools (the source is read once before timing), each tool
// converts once untimed into its own target before a convert row's timed runs, and sync(1)
// runs before every timed run. Neither converter fsyncs the data it wrote: qemu-img convert 7.2
// issues no fsync for a raw target's data (seen with strace), and tidemark image convert defaults
// to -t unsafe to match.
var sizeGiB = 2;
var runs = 3;
var onlyChain = false;
var onlyAllocating = false;
var root = Path.Combine(Path.GetTempPath(), $"tidemark-bench-{Environment.ProcessId}");
for (var i = 0; i < args.Length - 1; i++)
{
    switch (args[i])
    {
        case "--size-gib":
            sizeGiB = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--runs":
            runs = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--dir":
            root = args[++i];
            break;
        case "--rows":
            onlyChain = args[i + 1] == "chain";
            onlyAllocating = args[++i] == "allocating";
            break;
    }
}

var repo = FindRepository();
Directory.CreateDirectory(root);
var rows = new List<(string Name, double Tidemark, double Qemu, double? TidemarkCpu, double? QemuCpu)>();

// Each row is printed to stderr as soon as it is measured, so a long run shows its progress.
void Add(string name, Timed tidemark, Timed qemu)
{
    rows.Add((name, tidemark.Wall, qemu.Wall, tidemark.Cpu, qemu.Cpu));
    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}: tidemark {tidemark.Wall:F3} s, qemu {qemu.Wall:F3} s"));
}

try
{
    Console.WriteLine($"qemu-img: {(await RunAsync("qemu-img", "--version")).Split('\n')[0]}");
    Console.WriteLine($"data: {sizeGiB} GiB images; converts best of {runs} runs, short commands median of 21; work directory {root}");
    if (onlyAllocating)
    {
        await AllocatingRowAsync(root, runs, Add);
        goto Table;
    }

    // The run script has built the native CLI; start it directly so no build check is timed.
    var cli = Path.Combine(repo, "artifacts", "cli", "tidemark");
    if (!File.Exists(cli))
    {
        await RunAsync(Path.Combine(repo, "tidemark"), "--help");
    }

    var size = (long)sizeGiB << 30;
    var layouts = new (string Name, IEnumerable<(long Offset, int Length)> Writes)[]
    {
        ("1M/1M", Every(size, 2L << 20, 1 << 20)),
        ("4M/8M", Every(size, 8L << 20, 4 << 20)),
        ("64K scattered", Scattered(size, 4000, 64 << 10)),
    };
    await ChainRowsAsync(cli, root, size, runs, Add);
    foreach (var (layout, writes) in onlyChain ? layouts[..0] : layouts)
    {
        var raw = Path.Combine(root, "src.raw");
        await MakeRawAsync(raw, size, writes);
        var qcow2 = Path.Combine(root, "src.qcow2");
        await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
        await WarmAsync(raw);
        await WarmAsync(qcow2);

        if (layout == layouts[0].Name)
        {
            foreach (var (name, arguments) in new (string, string[])[]
            {
                ("--version", ["--version"]),
                ("image info (qcow2)", ["image", "info", qcow2]),
                ("image map (qcow2)", ["image", "map", qcow2]),
            })
            {
                var (tidemark, qemu) = await MedianAsync(21, () => TimeProcessAsync(cli, arguments), () => TimeProcessAsync("qemu-img", arguments[0] == "image" ? arguments[1..] : arguments));
                Add(name, tidemark, qemu);
            }
        }

        foreach (var (name, source, sourceFormat, targetFormat) in new[]
        {
            ("raw->qcow2", raw, "raw", "qcow2"),
            ("qcow2->raw", qcow2, "qcow2", "raw"),
            ("qcow2->qcow2", qcow2, "qcow2", "qcow2"),
        })
        {
            // Each tool writes its own target, so neither writes into page-cache pages the
            // other's truncated output has just given back (see AlternateAsync).
            var target = Path.Combine(root, "out-tidemark." + targetFormat);
            var qemuTarget = Path.Combine(root, "out-qemu." + targetFormat);

            // One untimed convert by each tool first, so every timed run (round 1 included)
            // truncates and rewrites its own earlier output. Without it the first timed run of
            // each tool writes a new file into page-cache pages the host has taken back (see
            // AlternateAsync): Tidemark in round 1, as it goes first, which alone put the first
            // row of one quiet run at 2x qemu-img's CPU, all of it system time (README.md).
            await RunAsync(cli, "image", "convert", "-f", sourceFormat, "-O", targetFormat, source, target);
            await RunAsync("qemu-img", "convert", "-f", sourceFormat, "-O", targetFormat, source, qemuTarget);
            var (tidemark, qemu) = await AlternateAsync(
                runs,
                () => TimeProcessAsync(cli, "image", "convert", "-f", sourceFormat, "-O", targetFormat, source, target),
                () => TimeProcessAsync("qemu-img", "convert", "-f", sourceFormat, "-O", targetFormat, source, qemuTarget));
            await RunAsync("qemu-img", "compare", "-f", sourceFormat, "-F", targetFormat, source, target);
            Add($"convert {name}, {layout}", tidemark, qemu);

            if (layout == layouts[0].Name)
            {
                // The same conversion in-process (open, sparse copy, close): Tidemark without process start-up.
                var inProcess = await AlternateAsync(runs, () => ConvertInProcessAsync(source, sourceFormat, target, targetFormat), () => TimeProcessAsync("qemu-img", "convert", "-f", sourceFormat, "-O", targetFormat, source, qemuTarget));
                Add($"convert {name}, {layout} (in-process)", inProcess.Tidemark, inProcess.Qemu);
            }

            File.Delete(target);
            File.Delete(qemuTarget);
        }

        File.Delete(raw);
        File.Delete(qcow2);
    }

    if (onlyChain)
    {
        goto Table;
    }

    var benchImage = Path.Combine(root, "bench.qcow2");
    var sequential = await AlternateAsync(runs, () => TidemarkSequentialAsync(benchImage), () => QemuBenchAsync(benchImage));
    Add("4 KiB writes (qemu-img bench -w)", sequential.Tidemark, sequential.Qemu);
    var offsets = RandomOffsets(20000, 1L << 30);
    var random = await AlternateAsync(runs, () => TidemarkRandomAsync(benchImage, offsets), () => QemuRandomAsync(benchImage, offsets));
    Add("random 4 KiB writes, QD1 (qemu-io)", random.Tidemark, random.Qemu);
    await AllocatingRowAsync(root, runs, Add);
}
finally
{
    Directory.Delete(root, recursive: true);
}

Table:
Console.WriteLine();
Console.WriteLine($"{"row",-42} {"tidemark s",11} {"qemu s",11} {"ratio",7} {"tidemark cpu",13} {"qemu cpu",9} {"cpu ratio",9}");
foreach (var (name, tidemark, qemu, tidemarkCpu, qemuCpu) in rows)
{
    var cpu = tidemarkCpu is { } t && qemuCpu is { } q
        ? string.Create(CultureInfo.InvariantCulture, $"{t,13:F3} {q,9:F3} {q / t,9:F2}")
        : $"{"-",13} {"-",9} {"-",9}";
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-42} {tidemark,11:F3} {qemu,11:F3} {qemu / tidemark,7:F2} {cpu}"));
}

Console.WriteLine("ratio = qemu time / tidemark time (>= 1: Tidemark at least as fast); cpu = user + system seconds of the process");
return 0;

// Runs the two tools in turn, each after a sync(1) so neither pays for the other's dirty pages;
// keeps the best time of each. The order swaps every round (Tidemark first in rounds 1, 3, ...;
// qemu-img first in rounds 2, 4, ...): on a virtual machine whose host takes back free guest
// memory, a large write into pages that were freed a while ago costs several times a write
// into pages just freed, so whoever runs first after a pause would always draw the slow case.
static async Task<(Timed Tidemark, Timed Qemu)> AlternateAsync(int runs, Func<Task<double>> tidemark, Func<Task<double>> qemu)
{
    var samples = (Tidemark: new List<Timed>(), Qemu: new List<Timed>());
    for (var i = 0; i < runs; i++)
    {
        var order = i % 2 == 0 ? new[] { (tidemark, samples.Tidemark), (qemu, samples.Qemu) } : new[] { (qemu, samples.Qemu), (tidemark, samples.Tidemark) };
        foreach (var (run, into) in order)
        {
            await RunAsync("sync");
            into.Add(await Timed.MeasureAsync(run));
        }
    }

    return (Timed.Best(samples.Tidemark), Timed.Best(samples.Qemu));
}

// Short commands: alternates the two tools, keeps the median of each (after one warm-up run each).
static async Task<(Timed Tidemark, Timed Qemu)> MedianAsync(int runs, Func<Task<double>> tidemark, Func<Task<double>> qemu)
{
    await tidemark();
    await qemu();
    var samples = (Tidemark: new List<Timed>(), Qemu: new List<Timed>());
    for (var i = 0; i < runs; i++)
    {
        samples.Tidemark.Add(await Timed.MeasureAsync(tidemark));
        samples.Qemu.Add(await Timed.MeasureAsync(qemu));
    }

    return (Timed.Median(samples.Tidemark), Timed.Median(samples.Qemu));
}

// The target is the one the process rows wrote, as each process reuses its own: creating the
// image truncates it inside the timing, as the qemu-img and tidemark processes do.
static async Task<double> ConvertInProcessAsync(string source, string sourceFormat, string target, string targetFormat)
{
    var clock = Stopwatch.StartNew();
    await using var input = await Tidemark.Storage.DiskImage.OpenAsync(source, Tidemark.Storage.ImageFormatNames.Parse(sourceFormat), readOnly: true);
    if (targetFormat == "qcow2")
    {
        await using var output = await Qcow2Image.CreateAsync(target, new Qcow2CreateOptions { Size = input.VirtualSize });
        output.CacheMode = Tidemark.Storage.CacheMode.Unsafe;
        await Tidemark.Storage.SparseCopy.CopyAsync(input, output, compress: false);
    }
    else
    {
        await using var output = Tidemark.Storage.RawImage.Create(target, input.VirtualSize);
        output.CacheMode = Tidemark.Storage.CacheMode.Unsafe;
        await Tidemark.Storage.SparseCopy.CopyAsync(input, output, compress: false);
    }

    return clock.Elapsed.TotalSeconds;
}

// The chain rows (see the top of this file).
static async Task ChainRowsAsync(string cli, string root, long size, int runs, Action<string, Timed, Timed> add)
{
    var dir = Path.Combine(root, "chain");
    Directory.CreateDirectory(dir);
    string P(string name) => Path.Combine(dir, name);
    var raw = P("full.raw");
    await MakeRawAsync(raw, size, Every(size, 2L << 20, 1 << 20));
    await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, P("full.qcow2"));
    File.Delete(raw);
    var random = new Random(5);
    foreach (var (name, backing, pattern) in new[] { ("inc1.qcow2", "full.qcow2", 0x61), ("inc2.qcow2", "inc1.qcow2", 0x62) })
    {
        await RunAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", P(name));
        var script = new StringBuilder();
        for (var i = 0; i < size / 20 / (1 << 20); i++)
        {
            script.Append(CultureInfo.InvariantCulture, $"write -q -P {pattern} {random.NextInt64(size >> 20) << 20} 1M\n");
        }

        script.Append("quit\n");
        await RunWithInputAsync("qemu-io", script.ToString(), ["-f", "qcow2", P(name)]);
    }

    var expected = P("expected.qcow2");
    await RunAsync("qemu-img", "convert", "-O", "qcow2", P("inc2.qcow2"), expected);
    foreach (var file in new[] { "full.qcow2", "inc1.qcow2", "inc2.qcow2" })
    {
        File.Copy(P(file), P("pristine-" + file));
        await WarmAsync(P(file));
    }

    // Fresh copies of the images a run changes, outside the timing.
    void Restore(params string[] names)
    {
        foreach (var name in names)
        {
            File.Copy(P("pristine-" + name), P(name), overwrite: true);
        }
    }

    async Task<double> TimeRunAsync(string[] restore, string program, params string[] arguments)
    {
        Restore(restore);
        await WarmAsync(P("inc1.qcow2"));
        await WarmAsync(P("inc2.qcow2"));

        // The fresh copies are dirty in the page cache (1 GiB for full.qcow2): without this
        // sync the kernel writes them back during the timed run, and a verb's fdatasync of
        // full.qcow2 (commit -b) waits for the whole copy.
        await RunAsync("sync");
        return await TimeProcessAsync(program, arguments);
    }

    async Task Row(string row, string[] restore, string[] arguments, string check)
    {
        var (tidemark, qemu) = await AlternateAsync(runs, () => TimeRunAsync(restore, cli, ["image", .. arguments]), () => TimeRunAsync(restore, "qemu-img", arguments));
        foreach (var program in new[] { cli, "qemu-img" })
        {
            Restore(restore);
            File.Delete(P("out.qcow2"));
            await RunAsync(program, program == cli ? ["image", .. arguments] : arguments);
            await RunAsync("qemu-img", "compare", expected, P(check));
            await RunAsync("qemu-img", "check", P(check));
        }

        add(row, tidemark, qemu);
    }

    await Row("commit inc2 (into inc1)", ["inc1.qcow2", "inc2.qcow2"], ["commit", "-q", P("inc2.qcow2")], "inc2.qcow2");
    await Row("commit -b full inc2", ["full.qcow2", "inc1.qcow2", "inc2.qcow2"], ["commit", "-q", "-b", P("full.qcow2"), P("inc2.qcow2")], "full.qcow2");
    // full restored too: the commit -b row's checks leave inc1's and inc2's data committed
    // into it, so the old and new chains would read the same and there would be nothing to copy.
    await Row("rebase (safe) inc2 onto full", ["full.qcow2", "inc2.qcow2"], ["rebase", "-b", "full.qcow2", "-F", "qcow2", P("inc2.qcow2")], "inc2.qcow2");
    // inc2 restored too: the rebase row's checks leave it rebased onto full (inc1's data copied
    // in), which would make this row copy that instead of inc2's own 5 %.
    await Row("convert -B inc1 inc2", ["inc2.qcow2"], ["convert", "-O", "qcow2", "-B", "inc1.qcow2", "-F", "qcow2", P("inc2.qcow2"), P("out.qcow2")], "out.qcow2");
    Restore("full.qcow2", "inc1.qcow2", "inc2.qcow2");
}

static async Task<double> TidemarkSequentialAsync(string path)
{
    File.Delete(path);
    await using var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 1L << 30 });
    var data = new byte[4096];
    Array.Fill(data, (byte)0xa5);
    var clock = Stopwatch.StartNew();
    for (var i = 0; i < 75000; i++)
    {
        await image.WriteAsync(i * 4096L, data);
    }

    await image.FlushAsync();
    return clock.Elapsed.TotalSeconds;
}

static async Task<double> QemuBenchAsync(string path)
{
    File.Delete(path);
    await RunAsync("qemu-img", "create", "-f", "qcow2", path, "1G");
    var output = await RunAsync("qemu-img", "bench", "-w", "-c", "75000", "-s", "4K", "-f", "qcow2", path);

    // "Run completed in 1.172 seconds."
    var line = output.Split('\n').First(l => l.StartsWith("Run completed in ", StringComparison.Ordinal));
    return double.Parse(line["Run completed in ".Length..].Split(' ')[0], CultureInfo.InvariantCulture);
}

static async Task<double> TidemarkRandomAsync(string path, long[] offsets)
{
    File.Delete(path);
    await using var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 1L << 30 });
    var data = new byte[4096];
    Array.Fill(data, (byte)0x5a);
    var clock = Stopwatch.StartNew();
    foreach (var offset in offsets)
    {
        await image.WriteAsync(offset, data);
    }

    await image.FlushAsync();
    return clock.Elapsed.TotalSeconds;
}

static async Task<double> QemuRandomAsync(string path, long[] offsets)
{
    File.Delete(path);
    await RunAsync("qemu-img", "create", "-f", "qcow2", path, "1G");
    var script = new StringBuilder();
    foreach (var offset in offsets)
    {
        script.Append(CultureInfo.InvariantCulture, $"write -q -P 0x5a {offset} 4k\n");
    }

    script.Append("flush\nquit\n");
    var clock = Stopwatch.StartNew();
    await RunWithInputAsync("qemu-io", script.ToString(), ["-f", "qcow2", path]);
    return clock.Elapsed.TotalSeconds;
}

// The allocating row (see the top of this file); prints writes per second for both tools too.
static async Task AllocatingRowAsync(string root, int runs, Action<string, Timed, Timed> add)
{
    const int Count = 16384;
    const int Cluster = 64 << 10;
    const long Size = 2L << 30;
    var clusters = Enumerable.Range(0, (int)(Size / Cluster)).ToArray();
    new Random(7).Shuffle(clusters);
    var offsets = clusters[..Count].Select(c => (long)c * Cluster).ToArray();
    var script = new StringBuilder();
    for (var i = 0; i < Count; i++)
    {
        script.Append(CultureInfo.InvariantCulture, $"write -q -P 0x{(i % 255) + 1:x2} {offsets[i]} 64k\n");
    }

    script.Append("quit\n");
    var ours = Path.Combine(root, "alloc-tidemark.qcow2");
    var theirs = Path.Combine(root, "alloc-qemu.qcow2");

    // This process's CPU seconds (user + system) in the best Tidemark run, comparable with
    // qemu-io's figure from getrusage(RUSAGE_CHILDREN).
    var cpu = new List<(double Wall, double Cpu)>();

    async Task<double> TimeTidemarkAsync()
    {
        File.Delete(ours);
        var image = await Qcow2Image.CreateAsync(ours, new Qcow2CreateOptions { Size = Size, ClusterSize = Cluster });
        image.CacheMode = Tidemark.Storage.CacheMode.Unsafe;
        var buffers = Enumerable.Range(1, 255).Select(b => Enumerable.Repeat((byte)b, Cluster).ToArray()).ToArray();
        var before = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < Count; i++)
        {
            await image.WriteAsync(offsets[i], buffers[i % 255]);
        }

        await image.DisposeAsync();
        var wall = clock.Elapsed.TotalSeconds;
        cpu.Add((wall, (Environment.CpuUsage.TotalTime - before).TotalSeconds));
        return wall;
    }

    async Task<double> TimeQemuAsync()
    {
        File.Delete(theirs);
        await RunAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={Cluster}", theirs, Size.ToString(CultureInfo.InvariantCulture));
        var clock = Stopwatch.StartNew();
        await RunWithInputAsync("qemu-io", script.ToString(), ["-f", "qcow2", "-t", "unsafe", theirs]);
        return clock.Elapsed.TotalSeconds;
    }

    var (tidemark, qemu) = await AlternateAsync(runs, TimeTidemarkAsync, TimeQemuAsync);
    tidemark = tidemark with { Cpu = cpu.Min(c => c.Cpu) };
    await RunAsync("qemu-img", "check", ours);
    await RunAsync("qemu-img", "compare", "-s", ours, theirs);
    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"allocating 64 KiB writes: tidemark {Count / tidemark.Wall:F0}/s ({tidemark.Cpu * 1e6 / Count:F0} us CPU each), qemu {Count / qemu.Wall:F0}/s ({qemu.Cpu * 1e6 / Count:F0} us CPU each)"));
    add($"allocating 64 KiB writes ({Count})", tidemark, qemu);
    File.Delete(ours);
    File.Delete(theirs);
}

static long[] RandomOffsets(int count, long size)
{
    var random = new Random(42);
    return Enumerable.Range(0, count).Select(_ => random.NextInt64(size / 4096) * 4096).ToArray();
}

// LENGTH bytes of data every STRIDE bytes from offset 0.
static IEnumerable<(long Offset, int Length)> Every(long size, long stride, int length)
{
    for (long at = 0; at < size; at += stride)
    {
        yield return (at, length);
    }
}

// COUNT writes of LENGTH bytes at random LENGTH-aligned offsets (fixed seed: every run the same).
static IEnumerable<(long Offset, int Length)> Scattered(long size, int count, int length)
{
    var random = new Random(11);
    return Enumerable.Range(0, count).Select(_ => (random.NextInt64(size / length) * length, length)).Order().ToArray();
}

static async Task MakeRawAsync(string path, long size, IEnumerable<(long Offset, int Length)> writes)
{
    var random = new Random(1);
    var chunk = new byte[4 << 20];
    await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
    file.SetLength(size);
    foreach (var (offset, length) in writes)
    {
        random.NextBytes(chunk.AsSpan(0, length));
        file.Seek(offset, SeekOrigin.Begin);
        await file.WriteAsync(chunk.AsMemory(0, length));
    }
}

static async Task WarmAsync(string path)
{
    var buffer = new byte[1 << 20];
    await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, useAsync: true);
    while (await file.ReadAsync(buffer) > 0)
    {
    }
}

static async Task<double> TimeProcessAsync(string program, params string[] arguments)
{
    var clock = Stopwatch.StartNew();
    await RunAsync(program, arguments);
    return clock.Elapsed.TotalSeconds;
}

static Task<string> RunAsync(string program, params string[] arguments) => RunWithInputAsync(program, null, arguments);

static async Task<string> RunWithInputAsync(string program, string? stdin, string[] arguments)
{
    var info = new ProcessStartInfo(program, arguments)
    {
        RedirectStandardOutput = true,
        RedirectStandardError = true,
        RedirectStandardInput = stdin is not null,
    };
    using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
    var output = process.StandardOutput.ReadToEndAsync();
    var error = process.StandardError.ReadToEndAsync();
    if (stdin is not null)
    {
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
    }

    await process.WaitForExitAsync();
    if (process.ExitCode != 0)
    {
        throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited {process.ExitCode}: {await error}");
    }

    return await output;
}

static string FindRepository()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Tidemark.slnx")))
        {
            return dir.FullName;
        }
    }

    throw new InvalidOperationException("run the benchmark from inside the Tidemark repository");
}

/// <summary>
/// One timing: wall seconds, and for a child process the CPU seconds (user + system) it used,
/// from getrusage(RUSAGE_CHILDREN) around it: on a shared machine the CPU figure shows where a
/// process's own time goes even when the wall time is mostly waiting for the disk.
/// </summary>
internal readonly record struct Timed(double Wall, double? Cpu)
{
    public static async Task<Timed> MeasureAsync(Func<Task<double>> run)
    {
        var before = ChildCpuSeconds();
        var wall = await run();
        var cpu = ChildCpuSeconds() - before;
        // An in-process run starts no child: no CPU figure.
        return new Timed(wall, cpu > 0 ? cpu : null);
    }

    public static Timed Best(List<Timed> samples) =>
        new(samples.Min(s => s.Wall), samples.All(s => s.Cpu is not null) ? samples.Min(s => s.Cpu) : null);

    public static Timed Median(List<Timed> samples)
    {
        var walls = samples.Select(s => s.Wall).Order().ToList();
        var cpus = samples.Select(s => s.Cpu).Order().ToList();
        return new(walls[walls.Count / 2], cpus.All(c => c is not null) ? cpus[cpus.Count / 2] : null);
    }

    private static double ChildCpuSeconds()
    {
        const int RUSAGE_CHILDREN = -1;
        if (NativeMethods.getrusage(RUSAGE_CHILDREN, out var usage) != 0)
        {
            throw new InvalidOperationException("getrusage failed");
        }

        return usage.UserSeconds + (usage.UserMicroseconds / 1e6) + usage.SystemSeconds + (usage.SystemMicroseconds / 1e6);
    }

    // struct rusage on 64-bit Linux: two struct timeval, then 14 longs.
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential, Size = 144)]
    private struct RUsage
    {
        public long UserSeconds;
        public long UserMicroseconds;
        public long SystemSeconds;
        public long SystemMicroseconds;
    }

    private static class NativeMethods
    {
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        internal static extern int getrusage(int who, out RUsage usage);
    }
}
