using System.Diagnostics;
using System.Globalization;
using Tidemark.Bench.Engine;
using Tidemark.Engine.Domains;

// Engine benchmark: a running domain's backups and guest writes against QEMU's tools on the same
// images, same machine, same run. Prints one table.
//
//   bench/engine/run [SIZE_MIB [DATA_MIB]] [--runs N] [--rounds N] [--work DIR] [--rows push,writes,export]
//                                                    (default 2048 1024, 2 runs, 5 rounds, every row)
//
// Push rows: each Tidemark/peer pair alternates RUNS times, best of each kept (sync(1) before
// each). The export row: at least 5 alternating pairs, the median of the per-pair ratios.
// Guest-write rows: two warm-up jobs, then ROUNDS rounds, each running every configuration once
// in an order shuffled per round (fixed seed); the median and range over the rounds, and each
// configuration's rate against the 0-checkpoint rate of the same round (paired), so that a few
// per cent can be told from the ±30 % the same configuration moves between runs.
//
// Rows:
//   full push, LAYOUT: BeginBackupAsync(push, full, qcow2 target) from begin to the job's end
//     (which fsyncs the target, as QEMU's close of a push target with cache=writeback does),
//     against `qemu-img convert -O qcow2` of the same image (domain shut off; its default
//     -t unsafe never fsyncs), and `qemu-img convert -t writeback` (fsync at close) in the notes. Layouts of DATA in
//     SIZE: 1 MiB data / 1 MiB hole; 4 MiB data every 8 MiB; 64 KiB clusters scattered at random.
//   incremental push 1 % / 5 %, LAYOUT: the guest dirties 1 % (then 5 %) of SIZE in 64 KiB
//     writes spread over the disk; push incremental since the previous checkpoint. Compared with
//     the same layout's full push: the time ratio should follow the byte ratio.
//   guest writes: fio's nbd engine (random 4 KiB, queue depth 16; sequential 1 MiB, depth 16) on
//     a fresh copy of the 1M/1M image, through the domain's export with 0, 1 and 10 checkpoints
//     (every checkpoint's bitmap records: spec §6, one always-recording bitmap per checkpoint) and
//     during a pull backup nobody reads (every first write to a cluster copies it to the scratch
//     first), against qemu-nbd serving the same image with the same fio job; QEMU's own pull
//     backup the same way (qemu-storage-daemon exporting a copy-before-write filter over the disk
//     with a qcow2 scratch as its target, against the same daemon with no backup); and `qemu-img bench
//     -w` on the image file (QEMU's block layer with no NBD hop; strided so that 4 KiB writes
//     scatter over the disk). Server CPU: user + system seconds of the serving process while
//     fio ran (Tidemark's is this process).
//   10 checkpoints vs 0, back to back: after the rounds, 2 x ROUNDS pairs of jobs with 0 and 10
//     checkpoints run one right after the other, the order alternating; the overhead of tracking
//     alone, paired per pair, with the server's CPU per job compared the same way.
//   pull export read: nbdcopy of the pull backup's export to null: against nbdcopy of qemu-nbd -r
//     serving the image, in max(5, RUNS) pairs (order alternating); the median of the per-pair
//     ratios, with each side's server CPU.
var sizeMiB = 2048L;
var dataMiB = -1L;
var runs = 2;
var rounds = 5;
var work = Path.Combine(Path.GetTempPath(), $"tm-bench-engine-{Environment.ProcessId}");
var rows = new HashSet<string>(["push", "writes", "export"], StringComparer.Ordinal);
var positional = 0;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--runs": runs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--work": work = args[++i]; break;
        case "--rows": rows = [.. args[++i].Split(',')]; break;
        default:
            if (positional == 0)
            {
                sizeMiB = long.Parse(args[i], CultureInfo.InvariantCulture);
            }
            else if (positional == 1)
            {
                dataMiB = long.Parse(args[i], CultureInfo.InvariantCulture);
            }
            else
            {
                Console.Error.WriteLine($"bench/engine/run: unexpected argument '{args[i]}'");
                return 2;
            }

            positional++;
            break;
    }
}

if (dataMiB < 0)
{
    dataMiB = sizeMiB / 2;
}

if (dataMiB * 2 > sizeMiB || sizeMiB < 64 || dataMiB < 8)
{
    Console.Error.WriteLine("bench/engine/run: SIZE_MIB must be at least 64 and DATA_MIB between 8 and half of SIZE_MIB");
    return 2;
}

Directory.CreateDirectory(work);
var table = new Table();
try
{
    var size = sizeMiB << 20;
    var data = dataMiB << 20;
    await using var host = await DomainHost.OpenAsync(Path.Combine(work, "state"));
    var bench = new EngineBench(host, work, size, runs, table);
    var layouts = new Layout[]
    {
        Layout.Every("1M/1M", size, data, 1 << 20),
        Layout.Every("4M/8M", size, data, 4 << 20),
        Layout.Scattered("64K scattered", size, data, 64 << 10),
    };
    string? firstImage = null;
    foreach (var layout in layouts)
    {
        if (firstImage is not null && !rows.Contains("push"))
        {
            // The guest-write and export rows need only the first layout.
            break;
        }

        var image = Path.Combine(work, $"{layout.Key}.qcow2");
        Console.Error.WriteLine($"bench: making {layout.Name} ({sizeMiB} MiB qcow2, {dataMiB} MiB data) ...");
        await layout.MakeQcow2Async(image, work);
        if (rows.Contains("push"))
        {
            await bench.PushRowsAsync(layout, image);
        }

        if (firstImage is null)
        {
            firstImage = image;
        }
        else
        {
            File.Delete(image);
        }
    }

    if (rows.Contains("writes"))
    {
        await bench.GuestWriteRowsAsync(firstImage!, rounds);
    }

    if (rows.Contains("export"))
    {
        await bench.ExportReadRowAsync(firstImage!);
    }
}
finally
{
    Directory.Delete(work, recursive: true);
}

Console.WriteLine($"Tidemark engine vs QEMU {(await Peers.OutputAsync("qemu-img", "--version")).Split('\n')[0].Replace("qemu-img version ", "", StringComparison.Ordinal)}, "
    + $"{(await Peers.OutputAsync("fio", "--version")).Trim()}, nbdcopy {(await Peers.OutputAsync("nbdcopy", "--version")).Split('\n')[0].Split(' ')[^1]}; "
    + $"{sizeMiB} MiB qcow2, {dataMiB} MiB data, {(rows.Contains("push") ? $"push: best of {runs}; " : "")}{(rows.Contains("export") ? $"export: median of {Math.Max(5, runs)} pairs; " : "")}{(rows.Contains("writes") ? $"guest writes: median of {rounds} interleaved rounds; " : "")}{Environment.ProcessorCount} CPUs, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
Console.WriteLine();
table.Print(Console.Out);
return 0;

namespace Tidemark.Bench.Engine
{
    /// <summary>The measurements: each adds its rows to the table as it ends (and says so on stderr).</summary>
    internal sealed class EngineBench(DomainHost host, string work, long size, int runs, Table table)
    {
        private const string Vda = "vda";
        private const int RandomWrites = 16384;
        private const int Depth = 16;

        private int _domains;

        private static double MiB(long bytes) => bytes / 1048576.0;

        /// <summary>Full push against qemu-img convert, then incremental pushes at 1 % and 5 % dirty.</summary>
        public async Task PushRowsAsync(Layout layout, string image)
        {
            var domain = await DefineAsync(image);
            var target = Path.Combine(work, "target.qcow2");
            var copied = double.MaxValue;
            var (tidemark, qemu) = await Timing.AlternateAsync(
                runs,
                async () =>
                {
                    File.Delete(target);
                    await domain.StartAsync();
                    var clock = Stopwatch.StartNew();
                    var backup = await domain.BeginBackupAsync(Push(target, null), null);

                    // When every byte is in the target, what is left is the final flush (fsync).
                    var copy = 0.0;
                    while (!backup.Completion.IsCompleted)
                    {
                        var progress = backup.Job.Info;
                        if (copy == 0 && progress.BytesTotal > 0 && progress.BytesProcessed == progress.BytesTotal)
                        {
                            copy = clock.Elapsed.TotalSeconds;
                        }

                        await Task.WhenAny(backup.Completion, Task.Delay(5));
                    }

                    var info = await backup.Completion;
                    var seconds = clock.Elapsed.TotalSeconds;
                    copied = Math.Min(copied, copy == 0 ? seconds : copy);
                    await domain.DestroyAsync();
                    Peers.Require(info.Phase == Tidemark.Engine.Backups.BackupJobPhase.Completed, $"full push ended {info.Phase}");
                    return seconds;
                },
                async () =>
                {
                    File.Delete(target);
                    return await Timing.ProcessAsync("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", image, target);
                });
            var (_, writeback) = await Timing.AlternateAsync(
                runs,
                () => Task.FromResult(0.0),
                async () =>
                {
                    File.Delete(target);
                    return await Timing.ProcessAsync("qemu-img", "convert", "-t", "writeback", "-f", "qcow2", "-O", "qcow2", image, target);
                });

            // The last target written is qemu-img's; Tidemark's were checked by the job's byte count.
            await Peers.RunAsync("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", image, target);
            var data = layout.DataBytes;

            // What durability costs on this disk alone: fio writing the same number of bytes
            // front to back and fsyncing them, no source to read and no image format.
            var durableFile = Path.Combine(work, "durableWrite.bin");
            var (_, durableWrite) = await Timing.AlternateAsync(
                runs,
                () => Task.FromResult(0.0),
                async () =>
                {
                    File.Delete(durableFile);
                    return await Timing.ProcessAsync("fio", "--name=durable", $"--filename={durableFile}", "--rw=write", "--bs=1m", $"--size={data}", "--ioengine=psync", "--end_fsync=1", "--output-format=terse");
                });
            File.Delete(durableFile);
            table.Add(
                $"full push, {layout.Name}",
                $"{tidemark:F2} s ({MiB(data) / tidemark:F0} MiB/s)",
                $"{qemu:F2} s (qemu-img convert -O qcow2)",
                qemu / tidemark,
                $"target ≥ 1.0; all data in the target after {copied:F2} s, then the fsync; qemu-img convert -t writeback (fsync at close, as the job's end) {writeback:F2} s: {writeback / tidemark:F2}x; fio writing {MiB(data):F0} MiB + fsync (psync, one writer) {durableWrite:F2} s: {durableWrite / tidemark:F2}x");
            File.Delete(target);

            // Incrementals: checkpoint c1; dirty 1 %; push since c1 with c2 at its instant; dirty
            // 5 %; push since c2. One run each (the dirty set is used up by the checkpoint).
            await domain.StartAsync();
            await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>");
            var previous = "c1";
            var salt = 1;
            foreach (var percent in new[] { 1, 5 })
            {
                var dirty = await DirtyAsync(domain, size * percent / 100, salt++);
                var next = $"c{salt}";
                var inc = Path.Combine(work, $"inc{percent}.qcow2");
                await Peers.RunAsync("sync");
                var clock = Stopwatch.StartNew();
                var backup = await domain.BeginBackupAsync(Push(inc, previous), $"<domaincheckpoint><name>{next}</name></domaincheckpoint>");
                var info = await backup.Completion;
                var seconds = clock.Elapsed.TotalSeconds;
                Peers.Require(info.Phase == Tidemark.Engine.Backups.BackupJobPhase.Completed, $"incremental push ended {info.Phase}");
                Peers.Require(info.BytesTotal == dirty, $"incremental push copied {info.BytesTotal} bytes, {dirty} were dirtied");
                table.Add(
                    $"incremental push {percent} % dirty, {layout.Name}",
                    $"{seconds:F2} s ({MiB(dirty):F0} MiB)",
                    $"{tidemark:F2} s (Tidemark full, {MiB(data):F0} MiB)",
                    tidemark / seconds,
                    $"time {seconds / tidemark * 100:F1} % of full for {(double)dirty / data * 100:F1} % of its bytes");
                File.Delete(inc);
                previous = next;
            }

            await domain.DestroyAsync();
        }

        /// <summary>
        /// fio over NBD through Tidemark (0, 1, 10 checkpoints, during a pull backup) and qemu-nbd,
        /// interleaved round by round, and qemu-img bench on the file. Each round runs every
        /// configuration once, in an order shuffled from round to round (so that none always runs
        /// first, or always after the same other one); a configuration's overhead is its
        /// rate over the 0-checkpoint rate of the same round, so a slow round slows both sides of
        /// the ratio. Reported: the median and the spread (min–max) over the rounds.
        /// </summary>
        public async Task GuestWriteRowsAsync(string baseImage, int rounds)
        {
            foreach (var pattern in new[] { FioPattern.Random4K, FioPattern.Sequential1M(size) })
            {
                var configurations = new (string Name, int Checkpoints, bool Pull, bool Qemu)[]
                {
                    ("0 checkpoints", 0, false, false), ("1 checkpoint", 1, false, false), ("10 checkpoints", 10, false, false),
                    ("during a pull backup", 0, true, false), ("qemu-nbd", 0, false, true),
                    (QsdPlain, 0, false, true), (QsdFleecing, 0, true, true),
                };
                var results = configurations.ToDictionary(c => c.Name, _ => new List<Throughput>());
                var files = new List<Throughput>();

                // The first jobs of a process run the engine's code before the JIT has optimised
                // it (a cold job ran at about half the rate of the next ones): one job without and
                // one during a pull, not counted, so that no round's first configuration pays it.
                foreach (var pull in new[] { false, true })
                {
                    var warm = await TidemarkWritesAsync(baseImage, pattern, 0, pull);
                    Console.Error.WriteLine($"bench: {pattern.Name}, warm-up{(pull ? " during a pull" : "")} (not counted): {warm.Describe()}");
                }

                // A shuffled order per round (fixed seed). In an order only rotated, each
                // configuration always ran right after the same one, the 0-checkpoint run after
                // QEMU's pull backup, and it came out below the 1- and 10-checkpoint runs in every
                // run of this bench; with QEMU's runs left out, the three came out alike.
                var order = new Random(8);
                for (var round = 0; round < rounds; round++)
                {
                    var sequence = configurations.ToArray();
                    order.Shuffle(sequence);
                    foreach (var (name, checkpoints, pull, qemu) in sequence)
                    {
                        var result = !qemu ? await TidemarkWritesAsync(baseImage, pattern, checkpoints, pull)
                            : name == "qemu-nbd" ? await QemuNbdWritesAsync(baseImage, pattern)
                            : await QemuStorageDaemonWritesAsync(baseImage, pattern, fleecing: pull);
                        results[name].Add(result);
                        Console.Error.WriteLine($"bench: {pattern.Name}, round {round + 1}/{rounds}, {name}: {result.Describe()}");
                    }

                    files.Add(await FileWritesAsync(baseImage, pattern));
                }

                var zero = results["0 checkpoints"];
                var qemuNbd = Spread.Of(results["qemu-nbd"].Select(r => r.BytesPerSecond));
                var file = Spread.Of(files.Select(r => r.BytesPerSecond));
                foreach (var (name, _, _, qemu) in configurations)
                {
                    if (qemu)
                    {
                        continue;
                    }

                    var mine = results[name];
                    var rate = Spread.Of(mine.Select(r => r.BytesPerSecond));
                    var cpu = Spread.Of(mine.Select(r => r.ServerCpu));
                    var paired = Spread.Of(mine.Select((r, i) => r.OverheadAgainst(zero[i])));
                    var againstQemu = Spread.Of(mine.Select((r, i) => r.BytesPerSecond / results["qemu-nbd"][i].BytesPerSecond));
                    table.Add(
                        $"guest {pattern.Name}, Tidemark {name}",
                        $"{pattern.Describe(rate.Median)} ({pattern.Range(rate)})",
                        $"{pattern.Describe(qemuNbd.Median)} (qemu-nbd; {pattern.Range(qemuNbd)})",
                        againstQemu.Median,
                        (name == "0 checkpoints" ? "" : string.Create(CultureInfo.InvariantCulture, $"overhead vs 0 checkpoints, paired per round: median {paired.Median:F1} % (rounds {paired.Min:F1} to {paired.Max:F1} %); "))
                            + string.Create(CultureInfo.InvariantCulture, $"vs qemu-nbd per round {againstQemu.Min:F2}–{againstQemu.Max:F2}x; {rate.Median / file.Median:F2}x of the file; server CPU median {cpu.Median:F2} s"));
                }

                // QEMU's own pull backup, measured the same way: its overhead against the same
                // daemon serving the disk with no backup, paired per round.
                var plain = results[QsdPlain];
                var fleecing = results[QsdFleecing];
                var qemuRate = Spread.Of(fleecing.Select(r => r.BytesPerSecond));
                var qemuOverhead = Spread.Of(fleecing.Select((r, i) => r.OverheadAgainst(plain[i])));
                var plainRate = Spread.Of(plain.Select(r => r.BytesPerSecond));
                table.Add(
                    $"guest {pattern.Name}, QEMU during a pull backup",
                    $"{pattern.Describe(qemuRate.Median)} ({pattern.Range(qemuRate)})",
                    $"{pattern.Describe(plainRate.Median)} (no backup; {pattern.Range(plainRate)})",
                    null,
                    string.Create(CultureInfo.InvariantCulture, $"qemu-storage-daemon exporting a copy-before-write filter over the disk, a qcow2 scratch as its target, as libvirt sets up a pull backup; overhead vs the same daemon with no backup, paired per round: median {qemuOverhead.Median:F1} % (rounds {qemuOverhead.Min:F1} to {qemuOverhead.Max:F1} %); server CPU median {Spread.Of(fleecing.Select(r => r.ServerCpu)).Median:F2} s against {Spread.Of(plain.Select(r => r.ServerCpu)).Median:F2} s"));

                await TrackingBackToBackRowAsync(baseImage, pattern, 2 * rounds);

                table.Add(
                    $"guest {pattern.Name}, qemu-img bench -w on the file",
                    $"{pattern.Describe(file.Median)} ({pattern.Range(file)})",
                    "-",
                    null,
                    "QEMU's block layer, no NBD hop: the ceiling");
            }
        }

        /// <summary>
        /// The cost of tracking alone: jobs with 0 and with 10 checkpoints run back to back, with
        /// nothing else in between, the pair's order alternating (0 then 10, 10 then 0), and the
        /// overhead taken pair by pair. In the shuffled rounds above, each run follows whichever
        /// configuration the shuffle put before it (QEMU's pull backup, a Tidemark pull), and
        /// what that run leaves behind (writeback, a scratch just deleted) lands on it: single
        /// rounds there spread by tens of per cent either way, against a difference sought of a
        /// few. The server's CPU time per job is compared the same way.
        /// </summary>
        private async Task TrackingBackToBackRowAsync(string baseImage, FioPattern pattern, int pairs)
        {
            var measured = new List<(Throughput Zero, Throughput Ten)>();
            for (var pair = 0; pair < pairs; pair++)
            {
                Throughput zero, ten;
                if (pair % 2 == 0)
                {
                    zero = await TidemarkWritesAsync(baseImage, pattern, 0, pull: false);
                    ten = await TidemarkWritesAsync(baseImage, pattern, 10, pull: false);
                }
                else
                {
                    ten = await TidemarkWritesAsync(baseImage, pattern, 10, pull: false);
                    zero = await TidemarkWritesAsync(baseImage, pattern, 0, pull: false);
                }

                measured.Add((zero, ten));
                Console.Error.WriteLine($"bench: {pattern.Name}, back to back {pair + 1}/{pairs}: 0 checkpoints {zero.Describe()}, 10 checkpoints {ten.Describe()}");
            }

            var zeroRate = Spread.Of(measured.Select(p => p.Zero.BytesPerSecond));
            var tenRate = Spread.Of(measured.Select(p => p.Ten.BytesPerSecond));
            var overhead = Spread.Of(measured.Select(p => p.Ten.OverheadAgainst(p.Zero)));
            var cpu = Spread.Of(measured.Select(p => ((p.Ten.ServerCpu / p.Zero.ServerCpu) - 1) * 100));
            table.Add(
                $"guest {pattern.Name}, Tidemark 10 checkpoints vs 0, back to back",
                $"{pattern.Describe(tenRate.Median)} ({pattern.Range(tenRate)})",
                $"{pattern.Describe(zeroRate.Median)} (0 checkpoints; {pattern.Range(zeroRate)})",
                null,
                string.Create(CultureInfo.InvariantCulture, $"{pairs} pairs, one job right after the other, order alternating; overhead paired per pair: median {overhead.Median:F1} % (pairs {overhead.Min:F1} to {overhead.Max:F1} %); server CPU per job {cpu.Median:+0.0;-0.0} % (pairs {cpu.Min:+0.0;-0.0} to {cpu.Max:+0.0;-0.0} %); target ≤ 5 %"));
        }

        /// <summary>
        /// nbdcopy of a full pull backup's export against nbdcopy of qemu-nbd -r on the same image,
        /// in pairs (order alternating, sync(1) before each read): the median of the per-pair
        /// ratios is the figure, since a single read here moves by ±40 % between runs (most of
        /// that in nbdcopy's own CPU time, which is the larger share on two CPUs).
        /// </summary>
        public async Task ExportReadRowAsync(string image)
        {
            var domain = await DefineAsync(image);
            var socket = Path.Combine(work, "pull.sock");
            var qemuSocket = Path.Combine(work, "qemu-r.sock");
            var pairs = Math.Max(5, runs);
            var results = new List<(double Tidemark, double TidemarkCpu, double Peer, double PeerCpu)>();
            for (var pair = 0; pair < pairs; pair++)
            {
                (double Seconds, double Cpu) mine = default, theirs = default;
                foreach (var tidemarkTurn in pair % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    await Peers.RunAsync("sync");
                    if (tidemarkTurn)
                    {
                        await domain.StartAsync();
                        var backup = await domain.BeginBackupAsync(Pull(socket, Path.Combine(work, "scratch.qcow2")), null);
                        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                        var seconds = await Timing.ProcessAsync("nbdcopy", $"nbd+unix:///{Vda}?socket={socket}", "null:");
                        mine = (seconds, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds);
                        domain.AbortBackup();
                        await backup.Completion;
                        await domain.DestroyAsync();
                    }
                    else
                    {
                        await using var server = await Peers.ServeAsync("qemu-nbd", qemuSocket, "-r", "-f", "qcow2", "-t", "-e", "4", "-x", Vda, "-k", qemuSocket, image);
                        var cpu = server.CpuSeconds();
                        var seconds = await Timing.ProcessAsync("nbdcopy", $"nbd+unix:///{Vda}?socket={qemuSocket}", "null:");
                        theirs = (seconds, server.CpuSeconds() - cpu);
                    }
                }

                results.Add((mine.Seconds, mine.Cpu, theirs.Seconds, theirs.Cpu));
            }

            var tidemark = Spread.Of(results.Select(r => r.Tidemark));
            var qemu = Spread.Of(results.Select(r => r.Peer));
            var ratio = Spread.Of(results.Select(r => r.Peer / r.Tidemark));
            var tidemarkCpu = Spread.Of(results.Select(r => r.TidemarkCpu));
            var qemuCpu = Spread.Of(results.Select(r => r.PeerCpu));
            table.Add(
                "pull export read, nbdcopy to null:",
                string.Create(CultureInfo.InvariantCulture, $"{tidemark.Median:F2} s ({tidemark.Min:F2}–{tidemark.Max:F2})"),
                string.Create(CultureInfo.InvariantCulture, $"{qemu.Median:F2} s (qemu-nbd -r; {qemu.Min:F2}–{qemu.Max:F2})"),
                ratio.Median,
                string.Create(CultureInfo.InvariantCulture, $"target ≥ 1.0; median of {pairs} pairs' ratios (pairs {ratio.Min:F2}–{ratio.Max:F2}x), best of each side {qemu.Min / tidemark.Min:F2}x; server CPU median {tidemarkCpu.Median:F2} s against qemu-nbd's {qemuCpu.Median:F2} s"));
        }

        private async Task<Domain> DefineAsync(string image)
        {
            var name = $"vm{++_domains}";
            return await host.DefineAsync($"""
                <domain type='kvm'>
                  <name>{name}</name>
                  <memory unit='KiB'>1048576</memory>
                  <devices>
                    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='{Vda}' bus='virtio'/></disk>
                  </devices>
                </domain>
                """);
        }

        private static string Push(string target, string? incremental)
            => $"""
                <domainbackup mode='push'>{(incremental is null ? "" : $"<incremental>{incremental}</incremental>")}
                  <disks><disk name='{Vda}' type='file'><target file='{target}'/><driver type='qcow2'/></disk></disks>
                </domainbackup>
                """;

        private static string Pull(string socket, string scratch)
            => $"""
                <domainbackup mode='pull'>
                  <server transport='unix' socket='{socket}'/>
                  <disks><disk name='{Vda}' type='file'><scratch file='{scratch}'/></disk></disks>
                </domainbackup>
                """;

        /// <summary>Writes <paramref name="bytes"/> (whole 64 KiB clusters) spread evenly over the disk through the guest's path; returns the bytes written.</summary>
        private async Task<long> DirtyAsync(Domain domain, long bytes, int salt)
        {
            const int Cluster = 64 << 10;
            var count = bytes / Cluster;
            var stride = size / count / Cluster * Cluster;
            var guest = domain.Running!.DiskByTarget(Vda)!.Guest;
            var block = new byte[Cluster];
            Array.Fill(block, (byte)(0x40 + salt));

            // A salt-dependent shift, so the 5 % run does not land on the 1 % run's clusters only.
            var shift = salt * 3 % Math.Max(1, stride / Cluster) * Cluster;
            for (long i = 0; i < count; i++)
            {
                await guest.WriteAsync(i * stride + shift, block);
            }

            return count * Cluster;
        }

        /// <summary>
        /// A fresh copy of the guest image for one measurement, fsynced: none of the copy is left
        /// to write back while fio runs. The copy's own fsync, not sync(1), which on a shared
        /// machine also waits for everyone else's dirty pages.
        /// </summary>
        private static void FreshCopy(string baseImage, string image)
        {
            File.Copy(baseImage, image, overwrite: true);
            using var file = new FileStream(image, FileMode.Open, FileAccess.ReadWrite);
            file.Flush(flushToDisk: true);
        }

        private async Task<Throughput> TidemarkWritesAsync(string baseImage, FioPattern pattern, int checkpoints, bool pull)
        {
            var image = Path.Combine(work, "guest.qcow2");
            FreshCopy(baseImage, image);
            var domain = await DefineAsync(image);
            await domain.StartAsync();
            for (var i = 0; i < checkpoints; i++)
            {
                await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>k{i}</name></domaincheckpoint>");
            }

            var socket = Path.Combine(work, "pull.sock");
            var backup = pull ? await domain.BeginBackupAsync(Pull(socket, Path.Combine(work, "scratch.qcow2")), null) : null;
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var result = await Fio.RunAsync($"nbd+unix:///{Vda}?socket={domain.Running!.SocketPath}", pattern);
            var serverCpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            if (backup is not null)
            {
                domain.AbortBackup();
                await backup.Completion;
            }

            await domain.DestroyAsync();
            File.Delete(image);
            return result with { ServerCpu = serverCpu };
        }

        private async Task<Throughput> QemuNbdWritesAsync(string baseImage, FioPattern pattern)
        {
            var image = Path.Combine(work, "guest.qcow2");
            FreshCopy(baseImage, image);
            var socket = Path.Combine(work, "qemu.sock");
            Throughput result;
            await using (var server = await Peers.ServeAsync("qemu-nbd", socket, "-f", "qcow2", "-t", "-e", "4", "-x", Vda, "-k", socket, image))
            {
                var cpu = server.CpuSeconds();
                result = await Fio.RunAsync($"nbd+unix:///{Vda}?socket={socket}", pattern);
                result = result with { ServerCpu = server.CpuSeconds() - cpu };
            }

            File.Delete(image);
            return result;
        }

        private const string QsdPlain = "qemu-storage-daemon";

        private const string QsdFleecing = "qemu-storage-daemon during a pull backup";

        /// <summary>
        /// fio through qemu-storage-daemon exporting the disk, with or without QEMU's pull backup
        /// in place: libvirt's fleecing set-up (qemuBackupDiskPrepareOneBitmaps and friends), a
        /// copy-before-write filter over the disk whose target is a new qcow2 scratch, and a
        /// snapshot-access node over the filter exported for the backup client (nobody reads it).
        /// The guest writes through the filter, as the VM does once libvirt has inserted it.
        /// </summary>
        private async Task<Throughput> QemuStorageDaemonWritesAsync(string baseImage, FioPattern pattern, bool fleecing)
        {
            var image = Path.Combine(work, "guest.qcow2");
            var scratch = Path.Combine(work, "qemu-scratch.qcow2");
            FreshCopy(baseImage, image);
            var socket = Path.Combine(work, "qsd.sock");
            List<string> args =
            [
                "--blockdev", $"driver=file,filename={image},node-name=guest-file",
                "--blockdev", "driver=qcow2,file=guest-file,node-name=guest",
            ];
            var exported = "guest";
            if (fleecing)
            {
                File.Delete(scratch);
                await Peers.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", scratch, $"{size}");
                args.AddRange([
                    "--blockdev", $"driver=file,filename={scratch},node-name=scratch-file",
                    "--blockdev", "driver=qcow2,file=scratch-file,node-name=scratch",
                    "--blockdev", "driver=copy-before-write,file=guest,target=scratch,node-name=fleecing",
                    "--blockdev", "driver=snapshot-access,file=fleecing,node-name=point-in-time",
                ]);
                exported = "fleecing";
            }

            args.AddRange(["--nbd-server", $"addr.type=unix,addr.path={socket}", "--export", $"type=nbd,id=disk,node-name={exported},name={Vda},writable=on"]);
            if (fleecing)
            {
                args.AddRange(["--export", "type=nbd,id=backup,node-name=point-in-time,name=backup-vda"]);
            }

            var pidFile = Path.Combine(work, "qsd.pid");
            args.AddRange(["--pidfile", pidFile]);
            Throughput result;
            await using (var server = await Peers.ServeAsync("qemu-storage-daemon", pidFile, [.. args]))
            {
                var cpu = server.CpuSeconds();
                result = await Fio.RunAsync($"nbd+unix:///{Vda}?socket={socket}", pattern);
                result = result with { ServerCpu = server.CpuSeconds() - cpu };
            }

            File.Delete(image);
            File.Delete(scratch);
            return result;
        }

        private async Task<Throughput> FileWritesAsync(string baseImage, FioPattern pattern)
        {
            var image = Path.Combine(work, "guest.qcow2");
            FreshCopy(baseImage, image);
            var output = await Peers.OutputAsync("qemu-img", [.. pattern.QemuImgBench(Depth), "-f", "qcow2", image]);

            // "Run completed in 1.172 seconds."
            var line = output.Split('\n').First(l => l.StartsWith("Run completed in ", StringComparison.Ordinal));
            var seconds = double.Parse(line["Run completed in ".Length..].Split(' ')[0], CultureInfo.InvariantCulture);
            File.Delete(image);
            return new Throughput(pattern.Bytes, seconds, pattern.BlockSize, 0);
        }
    }

    /// <summary>Where the data of a layout lies: (offset, length) pieces, all of random bytes.</summary>
    internal sealed class Layout(string name, string key, long size, IReadOnlyList<long> offsets, int piece)
    {
        public string Name => name;

        public string Key => key;

        public long DataBytes => (long)offsets.Count * piece;

        /// <summary><paramref name="data"/> bytes in pieces of <paramref name="piece"/> bytes, evenly spread (1 MiB data / 1 MiB hole when data is half of size).</summary>
        public static Layout Every(string name, long size, long data, int piece)
        {
            var count = data / piece;
            var stride = size / count / piece * piece;
            return new Layout(name, $"every{piece >> 20}m", size, [.. Enumerable.Range(0, (int)count).Select(i => i * stride)], piece);
        }

        /// <summary><paramref name="data"/> bytes in pieces of <paramref name="piece"/> bytes at random piece-aligned offsets (fixed seed).</summary>
        public static Layout Scattered(string name, long size, long data, int piece)
        {
            var slots = Enumerable.Range(0, (int)(size / piece)).ToArray();
            new Random(8).Shuffle(slots);
            return new Layout(name, "scattered", size, [.. slots.Take((int)(data / piece)).Order().Select(s => (long)s * piece)], piece);
        }

        /// <summary>Writes the pieces into a sparse raw file, then qemu-img converts it to qcow2 (64 KiB clusters, QEMU's layout).</summary>
        public async Task MakeQcow2Async(string qcow2, string work)
        {
            var raw = Path.Combine(work, "source.raw");
            var block = new byte[piece];
            var random = new Random(piece);
            await using (var f = new FileStream(raw, FileMode.Create, FileAccess.Write, FileShare.None, 0, FileOptions.Asynchronous))
            {
                f.SetLength(size);
                foreach (var offset in offsets)
                {
                    random.NextBytes(block);
                    f.Position = offset;
                    await f.WriteAsync(block);
                }
            }

            File.Delete(qcow2);
            await Peers.RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
            File.Delete(raw);
        }
    }

    /// <summary>One fio job (and its qemu-img bench equivalent on a file).</summary>
    internal sealed record FioPattern(string Name, string ReadWrite, int BlockSize, long Bytes, long BenchStep)
    {
        /// <summary>A rate in this pattern's unit: IOPS for small blocks, MiB/s for large ones.</summary>
        public string Describe(double bytesPerSecond) => BlockSize <= 4096
            ? string.Create(CultureInfo.InvariantCulture, $"{bytesPerSecond / BlockSize:F0} IOPS")
            : string.Create(CultureInfo.InvariantCulture, $"{bytesPerSecond / 1048576:F0} MiB/s");

        /// <summary>The range of a spread of rates, in this pattern's unit without its name.</summary>
        public string Range(Spread rates) => BlockSize <= 4096
            ? string.Create(CultureInfo.InvariantCulture, $"{rates.Min / BlockSize:F0}–{rates.Max / BlockSize:F0}")
            : string.Create(CultureInfo.InvariantCulture, $"{rates.Min / 1048576:F0}–{rates.Max / 1048576:F0}");

        /// <summary>
        /// 256 MiB of random 4 KiB writes (65,536 requests, almost all to different blocks of a
        /// 2 GiB disk): at Tidemark's 40,000 IOPS a 64 MiB job ended in under half a second, where
        /// connecting and the first requests' compilation moved one round's figure by tens of percent.
        /// </summary>
        public static FioPattern Random4K { get; } = new("random 4 KiB writes", "randwrite", 4096, 256L << 20, 257 * 4096);

        public static FioPattern Sequential1M(long size) => new("sequential 1 MiB writes", "write", 1 << 20, Math.Min(512L << 20, size / 4), 1 << 20);

        /// <summary>
        /// qemu-img bench arguments: sequential 1 MiB requests, or 4 KiB requests 257 blocks apart
        /// (the offset wraps at the image end; 257 is odd, so every block is visited once before
        /// any twice), which scatters them over the disk as random writes do.
        /// </summary>
        public string[] QemuImgBench(int depth) =>
            ["bench", "-w", "-s", BlockSize.ToString(CultureInfo.InvariantCulture), "-S", BenchStep.ToString(CultureInfo.InvariantCulture),
             "-c", (Bytes / BlockSize).ToString(CultureInfo.InvariantCulture), "-d", depth.ToString(CultureInfo.InvariantCulture)];
    }

    /// <summary>A write measurement: bytes in seconds, with the serving process's CPU seconds.</summary>
    internal sealed record Throughput(long Bytes, double Seconds, int BlockSize, double ServerCpu)
    {
        public double BytesPerSecond => Bytes / Seconds;

        /// <summary>Per cent of <paramref name="baseline"/>'s rate lost in this run (negative: faster).</summary>
        public double OverheadAgainst(Throughput baseline) => (1 - (BytesPerSecond / baseline.BytesPerSecond)) * 100;

        public string Describe() => BlockSize <= 4096
            ? string.Create(CultureInfo.InvariantCulture, $"{BytesPerSecond / BlockSize:F0} IOPS")
            : string.Create(CultureInfo.InvariantCulture, $"{BytesPerSecond / 1048576:F0} MiB/s");
    }

    /// <summary>The median and range of a set of measurements.</summary>
    internal readonly record struct Spread(double Median, double Min, double Max)
    {
        public static Spread Of(IEnumerable<double> values)
        {
            var sorted = values.Order().ToArray();
            var middle = sorted.Length / 2;
            var median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
            return new Spread(median, sorted[0], sorted[^1]);
        }
    }

    /// <summary>fio with its nbd engine (libnbd).</summary>
    internal static class Fio
    {
        public static async Task<Throughput> RunAsync(string uri, FioPattern pattern)
        {
            var output = await Peers.OutputAsync(
                "fio", "--name=guest", "--ioengine=nbd", $"--uri={uri}", $"--rw={pattern.ReadWrite}", $"--bs={pattern.BlockSize}",
                "--iodepth=16", $"--io_size={pattern.Bytes}", "--randrepeat=1", "--randseed=8", "--norandommap", "--output-format=json");

            // fio's nbd engine prints "fio: connected to NBD server" before the document.
            using var document = System.Text.Json.JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
            var job = document.RootElement.GetProperty("jobs")[0];
            Peers.Require(job.GetProperty("error").GetInt32() == 0, "fio reported an error");
            var write = job.GetProperty("write");
            var bytes = write.GetProperty("io_bytes").GetInt64();
            var milliseconds = write.GetProperty("runtime").GetInt64();
            return new Throughput(bytes, Math.Max(1, milliseconds) / 1000.0, pattern.BlockSize, 0);
        }
    }

    /// <summary>Alternating timed runs.</summary>
    internal static class Timing
    {
        /// <summary>Runs the two in turn, each after a sync(1); keeps the best time of each.</summary>
        public static async Task<(double Tidemark, double Peer)> AlternateAsync(int runs, Func<Task<double>> tidemark, Func<Task<double>> peer)
        {
            var (t, p) = (double.MaxValue, double.MaxValue);
            for (var i = 0; i < runs; i++)
            {
                await Peers.RunAsync("sync");
                t = Math.Min(t, await tidemark());
                await Peers.RunAsync("sync");
                p = Math.Min(p, await peer());
            }

            return (t, p);
        }

        public static async Task<double> ProcessAsync(string program, params string[] args)
        {
            var clock = Stopwatch.StartNew();
            await Peers.RunAsync(program, args);
            return clock.Elapsed.TotalSeconds;
        }
    }

    /// <summary>The printed table: one row per measurement, ratio = how Tidemark compares (above 1: Tidemark better).</summary>
    internal sealed class Table
    {
        private readonly List<(string Row, string Tidemark, string Peer, double? Ratio, string Note)> _rows = [];

        public void Add(string row, string tidemark, string peer, double? ratio, string note)
        {
            _rows.Add((row, tidemark, peer, ratio, note));
            Console.Error.WriteLine($"{row}: {tidemark} | {peer} | {ratio:F2} | {note}");
        }

        public void Print(TextWriter output)
        {
            output.WriteLine("| row | Tidemark | peer | ratio | notes |");
            output.WriteLine("| --- | ---: | ---: | ---: | --- |");
            foreach (var (row, tidemark, peer, ratio, note) in _rows)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {row} | {tidemark} | {peer} | {(ratio is { } r ? $"{r:F2}x" : "-")} | {note} |"));
            }

            output.WriteLine();
            output.WriteLine("ratio: peer time / Tidemark time for push and export rows, Tidemark rate / qemu-nbd rate for guest writes, full time / incremental time for incrementals (above 1: Tidemark better or faster)");
        }
    }

    /// <summary>Peer processes.</summary>
    internal static class Peers
    {
        public static void Require(bool condition, string message)
        {
            if (!condition)
            {
                throw new InvalidOperationException(message);
            }
        }

        public static async Task RunAsync(string program, params string[] args)
        {
            var (code, output, error) = await PeerProgram.RunAsync(program, args);
            Require(code == 0, $"{program} {string.Join(' ', args.Take(8))} exited {code}: {error}{output}");
        }

        public static async Task<string> OutputAsync(string program, params string[] args)
        {
            var (code, output, error) = await PeerProgram.RunAsync(program, args);
            Require(code == 0, $"{program} {string.Join(' ', args.Take(8))} exited {code}: {error}");
            return output;
        }

        /// <summary>
        /// Starts <paramref name="program"/> with <paramref name="args"/> and waits until
        /// <paramref name="ready"/> exists: qemu-nbd's socket, or qemu-storage-daemon's pid
        /// file, which it writes once every export is in place.
        /// </summary>
        public static async Task<PeerServer> ServeAsync(string program, string ready, params string[] args)
        {
            File.Delete(ready);
            var server = PeerServer.Start(program, args);
            for (var i = 0; i < 600 && !File.Exists(ready); i++)
            {
                if (server.HasExited)
                {
                    throw new InvalidOperationException($"{program} exited {server.ExitCode}: {await server.Error}");
                }

                await Task.Delay(20);
            }

            return server;
        }
    }
}
