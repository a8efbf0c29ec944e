using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Tidemark.Bench;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

// Tidemark's NBD server against qemu-nbd -r -t -e 4, same image, same machine, same clients
// (nbdcopy, nbdinfo), one run. Each row is the best of --repeat runs per server, alternating the
// servers so that both see the same machine load. Ratio = qemu-nbd time / Tidemark time: at
// least 1.0 means Tidemark is at least as fast.
var sizeGiB = 2;
var repeat = 3;
var work = Path.Combine(Path.GetTempPath(), $"tidemark-bench-nbd-{Environment.ProcessId}");
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--size-gib": sizeGiB = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--repeat": repeat = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--work": work = args[++i]; break;
        default: Console.Error.WriteLine($"unknown argument '{args[i]}'"); return 2;
    }
}

Directory.CreateDirectory(work);
try
{
    var size = (long)sizeGiB << 30;
    var raw = Path.Combine(work, "disk.raw");
    var qcow2 = Path.Combine(work, "disk.qcow2");
    Console.Error.WriteLine($"bench: making a {sizeGiB} GiB image, 1 MiB data / 1 MiB hole ...");
    await Bench.MakeImagesAsync(raw, qcow2, size);

    // Both servers export read-only: the clients only read, and QEMU's image locks (which
    // Tidemark takes as QEMU does) let two servers share a file only when neither writes.
    await using var image = RawImage.Open(raw, readOnly: true);

    // The dirty-bitmap row serves the very qcow2 file qemu-nbd serves, bitmap read from it.
    await using var qcow2Image = await Qcow2Image.OpenAsync(qcow2, readOnly: true);
    var bitmap = new DirtyBitmapSource("b0", qcow2Image.Bitmaps.Get("b0").Bitmap);
    var options = new NbdServerOptions();
    var ourSocket = Path.Combine(work, "tidemark.sock");
    var ourBitmapSocket = Path.Combine(work, "tidemark-bitmap.sock");
    options.EndPoints.Add(new UnixDomainSocketEndPoint(ourSocket));
    options.EndPoints.Add(new IPEndPoint(IPAddress.Loopback, 0));
    await using var server = new NbdServer(options, [new NbdExport("", image) { MultiConn = true }]);
    var bitmapOptions = new NbdServerOptions();
    bitmapOptions.EndPoints.Add(new UnixDomainSocketEndPoint(ourBitmapSocket));
    await using var bitmapServer = new NbdServer(bitmapOptions, [new NbdExport("", qcow2Image) { MultiConn = true, DirtyBitmaps = [bitmap] }]);
    await bitmapServer.StartAsync();
    await server.StartAsync();
    var ourPort = server.EndPoints.OfType<IPEndPoint>().Single().Port;

    var qemuSocket = Path.Combine(work, "qemu.sock");
    var qemuPort = Bench.FreePort();
    await using var qemuUnix = PeerServer.Start("qemu-nbd", "-r", "-f", "raw", "-t", "-e", "4", "-k", qemuSocket, raw);
    await using var qemuTcp = PeerServer.Start("qemu-nbd", "-r", "-f", "raw", "-t", "-e", "4", "-b", "127.0.0.1", "-p", qemuPort.ToString(CultureInfo.InvariantCulture), raw);
    var qemuBitmapSocket = Path.Combine(work, "qemu-bitmap.sock");
    await using var qemuBitmap = PeerServer.Start("qemu-nbd", "-r", "-f", "qcow2", "-t", "-e", "4", "-B", "b0", "-k", qemuBitmapSocket, qcow2);
    await Bench.WaitAsync(qemuSocket, qemuBitmapSocket, qemuPort);

    var target = Path.Combine(work, "copy.raw");
    var rows = new List<(string Name, string[] Tidemark, string[] Qemu, string Program, PeerServer QemuProcess)>();
    foreach (var destination in new[] { "null:", "file" })
    {
        foreach (var transport in new[] { "unix", "tcp" })
        {
            foreach (var connections in new[] { 1, 4 })
            {
                var ours = transport == "unix" ? $"nbd+unix:///?socket={ourSocket}" : $"nbd://127.0.0.1:{ourPort}/";
                var theirs = transport == "unix" ? $"nbd+unix:///?socket={qemuSocket}" : $"nbd://127.0.0.1:{qemuPort}/";
                var dst = destination == "null:" ? "null:" : target;
                var c = connections.ToString(CultureInfo.InvariantCulture);
                rows.Add(($"nbdcopy → {destination,-5} {transport,-4} -C {c}", ["-C", c, ours, dst], ["-C", c, theirs, dst], "nbdcopy", transport == "unix" ? qemuUnix : qemuTcp));
            }
        }
    }

    rows.Add(("nbdinfo --map=qemu:dirty-bitmap:b0 unix (qcow2)", ["--map=qemu:dirty-bitmap:b0", $"nbd+unix:///?socket={ourBitmapSocket}"], ["--map=qemu:dirty-bitmap:b0", $"nbd+unix:///?socket={qemuBitmapSocket}"], "nbdinfo", qemuBitmap));

    // Warm-up, so that every row measures a server in its steady state: the page cache for both
    // servers, and for Tidemark the JIT's optimised code (tiered compilation recompiles a method
    // after 30 calls; one nbdinfo --map makes a single block-status request). Both servers get
    // the same warm-up, alternating as in the timed runs, so neither row starts colder.
    await Bench.TimeAsync("nbdcopy", ["-C", "4", $"nbd+unix:///?socket={ourSocket}", "null:"]);
    await Bench.TimeAsync("nbdcopy", ["-C", "4", $"nbd+unix:///?socket={qemuSocket}", "null:"]);
    for (var i = 0; i < 40; i++)
    {
        await Bench.TimeAsync("nbdinfo", ["--map=qemu:dirty-bitmap:b0", $"nbd+unix:///?socket={ourBitmapSocket}"]);
        await Bench.TimeAsync("nbdinfo", ["--map=qemu:dirty-bitmap:b0", $"nbd+unix:///?socket={qemuBitmapSocket}"]);
    }
    await Task.Delay(500);

    // Server CPU time per run is reported beside wall time: on a shared machine the wall time
    // moves with other load, the CPU a server spends for the same work much less.
    var results = new List<(string Name, double Ours, double Theirs, double OursCpu, double TheirsCpu)>();
    using var self = Process.GetCurrentProcess();
    foreach (var (name, ours, theirs, program, qemuProcess) in rows)
    {
        var best = (Ours: double.MaxValue, Theirs: double.MaxValue);
        double oursCpu = 0, theirsCpu = 0;
        for (var r = 0; r < repeat; r++)
        {
            // The copy target is removed before the CPU sample: unlinking a 1 GiB file is kernel
            // time of this process, which would otherwise count as Tidemark's server CPU only.
            var cleanup = program == "nbdcopy" && ours[^1] == target ? target : null;
            await Bench.ResetAsync(cleanup);
            self.Refresh();
            var cpu0 = self.TotalProcessorTime.TotalSeconds;
            best.Ours = Math.Min(best.Ours, await Bench.TimeAsync(program, ours));
            self.Refresh();
            oursCpu += self.TotalProcessorTime.TotalSeconds - cpu0;
            await Bench.ResetAsync(cleanup);
            var qcpu0 = qemuProcess.CpuSeconds();
            best.Theirs = Math.Min(best.Theirs, await Bench.TimeAsync(program, theirs));
            theirsCpu += qemuProcess.CpuSeconds() - qcpu0;
        }

        if (program == "nbdinfo")
        {
            var a = await Bench.OutputAsync("nbdinfo", ours);
            var b = await Bench.OutputAsync("nbdinfo", theirs);
            if (a != b)
            {
                throw new InvalidOperationException("the dirty-bitmap maps differ between Tidemark and qemu-nbd");
            }
        }

        results.Add((name, best.Ours, best.Theirs, oursCpu / repeat, theirsCpu / repeat));
        Console.Error.WriteLine($"bench: {name}: tidemark {best.Ours:F3} s, qemu-nbd {best.Theirs:F3} s");
    }

    var data = size / 2 / (1024.0 * 1024.0);
    Console.WriteLine($"NBD benchmark: {sizeGiB} GiB image (1 MiB data / 1 MiB hole, {data:F0} MiB of data), best of {repeat}, {Environment.ProcessorCount} cores");
    Console.WriteLine($"qemu-nbd: {(await Bench.OutputAsync("qemu-nbd", ["--version"])).Split('\n')[0]}; nbdcopy/nbdinfo: {(await Bench.OutputAsync("nbdinfo", ["--version"])).Split('\n')[0]}");
    Console.WriteLine();
    Console.WriteLine("| client and transport | Tidemark (s) | qemu-nbd -r -t -e 4 (s) | ratio | server CPU s/run: Tidemark | qemu-nbd |");
    Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
    foreach (var (name, ours, theirs, oursCpu, theirsCpu) in results)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {ours:F3} | {theirs:F3} | {theirs / ours:F2}× | {oursCpu:F2} | {theirsCpu:F2} |"));
    }

    Console.WriteLine();
    Console.WriteLine($"ratio = qemu-nbd time / Tidemark time (≥ 1.00× means Tidemark is at least as fast); load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");

    return 0;
}
finally
{
    Directory.Delete(work, recursive: true);
}

/// <summary>Image making, peer processes and timing.</summary>
internal static class Bench
{
    /// <summary>
    /// Writes the raw image (random data in every other MiB) and a qcow2 image whose bitmap b0
    /// is dirty in every fourth 64 KiB cluster.
    /// </summary>
    public static async Task MakeImagesAsync(string raw, string qcow2, long size)
    {
        const int MiB = 1 << 20;
        var block = new byte[MiB];
        Random.Shared.NextBytes(block);
        await using (var f = new FileStream(raw, FileMode.Create, FileAccess.Write, FileShare.None, 0, FileOptions.Asynchronous))
        {
            f.SetLength(size);
            for (long offset = 0; offset < size; offset += 2 * MiB)
            {
                f.Position = offset;
                await f.WriteAsync(block);
            }
        }

        await RunAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, size.ToString(CultureInfo.InvariantCulture));
        await RunAsync("qemu-img", "bitmap", "--add", qcow2, "b0");
        var commands = new List<string> { "-f", "qcow2" };
        for (long offset = 0; offset < size; offset += 4 * 65536)
        {
            commands.Add("-c");
            commands.Add($"write -z {offset} 64k");
        }

        commands.Add(qcow2);
        await RunAsync("qemu-io", [.. commands]);
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static async Task WaitAsync(string socket1, string socket2, int port)
    {
        for (var i = 0; i < 600; i++)
        {
            if (File.Exists(socket1) && File.Exists(socket2))
            {
                try
                {
                    using var c = new TcpClient();
                    await c.ConnectAsync(IPAddress.Loopback, port);
                    await Task.Delay(200);
                    return;
                }
                catch (SocketException)
                {
                }
            }

            await Task.Delay(50);
        }

        throw new TimeoutException("qemu-nbd did not start");
    }

    /// <summary>Replaces <paramref name="target"/> (when given) by an empty file, so each copy starts alike.</summary>
    public static async Task ResetAsync(string? target)
    {
        if (target is not null)
        {
            File.Delete(target);
            await File.WriteAllBytesAsync(target, []);
        }
    }

    public static async Task<double> TimeAsync(string program, string[] args)
    {
        var sw = Stopwatch.StartNew();
        await RunAsync(program, args);
        return sw.Elapsed.TotalSeconds;
    }

    public static async Task<string> OutputAsync(string program, string[] args) => (await PeerProgram.RunAsync(program, args)).Output;

    public static async Task RunAsync(string program, params string[] args)
    {
        var (code, _, error) = await PeerProgram.RunAsync(program, args);
        if (code != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args.Take(6))} exited {code}: {error}");
        }
    }
}
