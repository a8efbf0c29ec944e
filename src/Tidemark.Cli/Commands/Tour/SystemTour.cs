using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Nbd.Client;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Tour;

/// <summary>
/// <c>tidemark tour</c>: the whole system end to end on a throw-away daemon, in process, on a
/// temporary state directory — a domain with two qcow2 disks, guest writes over NBD (Tidemark's
/// NBD client stands in for QEMU), a checkpoint with a full push backup, more writes, an
/// incremental push, more writes, an incremental pull read by its dirty-bitmap extents, and
/// each disk rebuilt from full + incrementals and compared with what the guest wrote. Every
/// call goes over libvirt's remote protocol, as virsh's would.
/// </summary>
internal sealed class SystemTour(CliConsole console)
{
    private const string Domain = "tour";
    private const long DiskSize = 64 << 20;
    private const int MiB = 1 << 20;

    private static readonly string[] Targets = ["vda", "vdb"];

    private readonly List<(string Step, bool Held)> _steps = [];

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var state = Directory.CreateTempSubdirectory("tidemark-tour-").FullName;
        await console.Out.WriteLineAsync($"Tidemark tour: the daemon, a domain, checkpoints and backups, end to end in {state}").ConfigureAwait(false);
        await console.Out.WriteLineAsync("(a throw-away daemon in this process; Tidemark's own NBD client plays the guest, so no QEMU is needed)\n").ConfigureAwait(false);
        try
        {
            await RunStepsAsync(state, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _steps.Add((e.Message, false));
            await console.Out.WriteLineAsync($"  FAILED: {e.Message}").ConfigureAwait(false);
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }

        var held = _steps.Count(s => s.Held);
        await console.Out.WriteLineAsync($"\n{held} of {_steps.Count} steps held{(held == _steps.Count ? "." : "; the tour stopped at the first that did not.")}").ConfigureAwait(false);
        return held == _steps.Count ? 0 : 1;
    }

    private async Task RunStepsAsync(string state, CancellationToken ct)
    {
        var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = state }, NullLoggerFactory.Instance);
        await using var stopDaemon = daemon.ConfigureAwait(false);
        await StepAsync("daemon started", async () =>
        {
            await daemon.StartAsync(ct).ConfigureAwait(false);
            return $"libvirt protocol on {daemon.SocketPath}";
        }).ConfigureAwait(false);

        var client = await LibvirtClient.ConnectAsync($"qemu+unix:///system?socket={daemon.SocketPath}", cancellationToken: ct).ConfigureAwait(false);
        await using var closeClient = client.ConfigureAwait(false);
        RemoteDomain domain = null!;
        await StepAsync("domain defined and started", async () =>
        {
            foreach (var target in Targets)
            {
                await (await Qcow2Image.CreateAsync(Path.Combine(state, target + ".qcow2"), new Qcow2CreateOptions { Size = DiskSize }, ct).ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
            }

            domain = await client.DefineDomainAsync(DomainXml(state), cancellationToken: ct).ConfigureAwait(false);
            domain = await client.StartDomainAsync(domain, cancellationToken: ct).ConfigureAwait(false);
            return $"'{Domain}' with vda and vdb, {Size(DiskSize)} qcow2 each, served over NBD on {GuestSocket(state)}";
        }).ConfigureAwait(false);

        var vda = await TourGuest.ConnectAsync(GuestSocket(state), "vda", ct).ConfigureAwait(false);
        await using var closeVda = vda.ConfigureAwait(false);
        var vdb = await TourGuest.ConnectAsync(GuestSocket(state), "vdb", ct).ConfigureAwait(false);
        await using var closeVdb = vdb.ConfigureAwait(false);
        await StepAsync("guest writes", async () =>
        {
            await vda.WriteAsync(0, 8 * MiB, 0x61, ct).ConfigureAwait(false);
            await vda.WriteAsync(40 * MiB, 4 * MiB, 0x62, ct).ConfigureAwait(false);
            await vdb.WriteAsync(16 * MiB, 6 * MiB, 0x63, ct).ConfigureAwait(false);
            return "vda: 8 MiB at 0 and 4 MiB at 40 MiB; vdb: 6 MiB at 16 MiB (each flushed)";
        }).ConfigureAwait(false);

        await StepAsync("checkpoint c1 + full push backup", async () =>
        {
            var stats = await BackupAsync(client, domain, PushXml(state, "full", incremental: null), "c1", ct).ConfigureAwait(false);
            var data = await StoredDataAsync([Path.Combine(state, "full-vda.qcow2"), Path.Combine(state, "full-vdb.qcow2")], ct).ConfigureAwait(false);

            // The job's own count is QEMU's: a full push processes the whole disks, holes included.
            return $"{Size(data)} copied to full-vda.qcow2 and full-vdb.qcow2 in {stats.Time}; the job counts {Size(stats.Bytes)} processed, the holes it left sparse included, as QEMU does";
        }).ConfigureAwait(false);

        await StepAsync("more guest writes", async () =>
        {
            await vda.WriteAsync(2 * MiB, 1 * MiB, 0x64, ct).ConfigureAwait(false);
            await vda.WriteAsync(60 * MiB, 512 * 1024, 0x65, ct).ConfigureAwait(false);
            await vdb.WriteAsync(0, 256 * 1024, 0x66, ct).ConfigureAwait(false);
            return "vda: 1 MiB at 2 MiB, 512 KiB at 60 MiB; vdb: 256 KiB at 0";
        }).ConfigureAwait(false);

        var atC2 = new Dictionary<string, byte[]>();
        await StepAsync("checkpoint c2 + incremental push backup since c1", async () =>
        {
            var stats = await BackupAsync(client, domain, PushXml(state, "inc", incremental: "c1"), "c2", ct).ConfigureAwait(false);

            // The guest is quiet: what it reads now is what c2 captured.
            atC2["vda"] = await vda.ReadAllAsync(ct).ConfigureAwait(false);
            atC2["vdb"] = await vdb.ReadAllAsync(ct).ConfigureAwait(false);
            var data = await StoredDataAsync([Path.Combine(state, "inc-vda.qcow2"), Path.Combine(state, "inc-vdb.qcow2")], ct).ConfigureAwait(false);
            return $"{Size(data)} copied to inc-vda.qcow2 and inc-vdb.qcow2 in {stats.Time}";
        }).ConfigureAwait(false);

        await StepAsync("more guest writes", async () =>
        {
            await vda.WriteAsync(24 * MiB, 3 * MiB, 0x67, ct).ConfigureAwait(false);
            await vdb.WriteAsync(63 * MiB, 1 * MiB, 0x68, ct).ConfigureAwait(false);
            return "vda: 3 MiB at 24 MiB; vdb: 1 MiB at 63 MiB";
        }).ConfigureAwait(false);

        var pulled = new Dictionary<string, IReadOnlyList<(long Offset, byte[] Data)>>();
        var now = new Dictionary<string, byte[]>
        {
            ["vda"] = await vda.ReadAllAsync(ct).ConfigureAwait(false),
            ["vdb"] = await vdb.ReadAllAsync(ct).ConfigureAwait(false),
        };
        await StepAsync("checkpoint c3 + incremental pull backup since c2", async () =>
        {
            var pullSocket = Path.Combine(state, "pull.sock");
            var clock = Stopwatch.StartNew();
            await client.BeginBackupAsync(domain, PullXml(state, pullSocket), "<domaincheckpoint><name>c3</name></domaincheckpoint>", cancellationToken: ct).ConfigureAwait(false);
            foreach (var target in Targets)
            {
                var context = "qemu:dirty-bitmap:backup-" + target;
                var export = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(pullSocket), ExportName = target, MetaContexts = [context] }, ct).ConfigureAwait(false);
                await using (export.ConfigureAwait(false))
                {
                    pulled[target] = await BackupRebuild.ReadPullIncrementalAsync(export, context, ct).ConfigureAwait(false);
                    await export.DisconnectAsync(ct).ConfigureAwait(false);
                }
            }

            await client.AbortJobAsync(domain, cancellationToken: ct).ConfigureAwait(false);
            var read = pulled.Values.Sum(l => l.Sum(c => (long)c.Data.Length));
            return $"{Size(read)} of dirty extents read over NBD from {pullSocket} in {Elapsed(clock.Elapsed)}, job ended";
        }).ConfigureAwait(false);

        await StepAsync("domain stopped", async () =>
        {
            await client.DestroyDomainAsync(domain, cancellationToken: ct).ConfigureAwait(false);
            return "guest disconnected, bitmaps stored, images closed";
        }).ConfigureAwait(false);

        foreach (var target in Targets)
        {
            var rebuild = await BackupRebuild.FromFullAsync(Path.Combine(state, $"full-{target}.qcow2"), ct).ConfigureAwait(false);
            await StepAsync($"{target} rebuilt from full + incremental push = the disk at c2", async () =>
            {
                var taken = await rebuild.ApplyPushIncrementalAsync(Path.Combine(state, $"inc-{target}.qcow2"), ct).ConfigureAwait(false);
                return Identical(rebuild, atC2[target], $"identical, {Size(rebuild.Disk.Length)} compared ({Size(taken)} from the incremental)");
            }).ConfigureAwait(false);
            await StepAsync($"{target} rebuilt from full + push + pull incrementals = the disk now", () =>
            {
                rebuild.Apply(pulled[target]);
                return Task.FromResult(Identical(rebuild, now[target], $"identical, {Size(rebuild.Disk.Length)} compared"));
            }).ConfigureAwait(false);
        }

        await StepAsync("domain undefined", async () =>
        {
            await client.UndefineDomainAsync(domain, 16, ct).ConfigureAwait(false);
            return "with its checkpoint metadata; the state directory goes next";
        }).ConfigureAwait(false);
    }

    private static string Identical(BackupRebuild rebuild, byte[] expected, string ok) =>
        rebuild.FirstDifference(expected) is { } at
            ? throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"the rebuilt disk differs at offset {at}"))
            : ok;

    private async Task StepAsync(string title, Func<Task<string>> step)
    {
        var clock = Stopwatch.StartNew();
        await console.Out.WriteLineAsync($"[{_steps.Count + 1}] {title}").ConfigureAwait(false);
        var detail = await step().ConfigureAwait(false);
        _steps.Add((title, true));
        await console.Out.WriteLineAsync($"    ok  {detail} ({Elapsed(clock.Elapsed)})").ConfigureAwait(false);
    }

    // Begins a push backup with a new checkpoint and waits for the job-completed event; returns
    // the statistics the event carries (VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: the completed job's).
    private static async Task<(long Bytes, string Time)> BackupAsync(LibvirtClient client, RemoteDomain domain, string backupXml, string checkpoint, CancellationToken ct)
    {
        var ended = new TaskCompletionSource<IReadOnlyList<TypedParameter>>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnCompleted(object? sender, JobCompletedEventArgs e)
        {
            if (e.Domain.Uuid == domain.Uuid)
            {
                ended.TrySetResult(e.Statistics);
            }
        }

        client.JobCompleted += OnCompleted;
        var callback = await client.RegisterDomainEventAsync(DomainEventId.JobCompleted, domain, ct).ConfigureAwait(false);
        try
        {
            var clock = Stopwatch.StartNew();
            await client.BeginBackupAsync(domain, backupXml, $"<domaincheckpoint><name>{checkpoint}</name></domaincheckpoint>", cancellationToken: ct).ConfigureAwait(false);
            var stats = await ended.Task.WaitAsync(TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
            if (stats.FirstOrDefault(p => p.Field == "success") is not { Bits: 1 })
            {
                var error = stats.FirstOrDefault(p => p.Field == "errmsg")?.Text ?? "no reason given";
                throw new InvalidOperationException($"the backup job did not succeed: {error}");
            }

            var bytes = stats.FirstOrDefault(p => p.Field == "disk_processed")?.AsUInt64() ?? 0;
            return ((long)bytes, Elapsed(clock.Elapsed));
        }
        finally
        {
            client.JobCompleted -= OnCompleted;
            await client.DeregisterDomainEventAsync(callback, ct).ConfigureAwait(false);
        }
    }

    // The bytes of data the targets hold of their own (an incremental's backing file not counted).
    private static async Task<long> StoredDataAsync(IEnumerable<string> targets, CancellationToken ct)
    {
        long data = 0;
        foreach (var target in targets)
        {
            var image = await Qcow2Image.OpenDetachedAsync(target, readOnly: true, ct).ConfigureAwait(false);
            await using (image.ConfigureAwait(false))
            {
                for (long offset = 0; offset < image.VirtualSize;)
                {
                    var extents = await image.GetExtentsAsync(offset, image.VirtualSize - offset, ct).ConfigureAwait(false);
                    data += extents.Where(e => e.Kind == ExtentKind.Data).Sum(e => e.Length);
                    offset = extents[^1].Offset + extents[^1].Length;
                }
            }
        }

        return data;
    }

    private static string GuestSocket(string state) => Path.Combine(state, "run", Domain + ".sock");

    private static string DomainXml(string state) => $"""
        <domain type='kvm'>
          <name>{Domain}</name>
          <memory unit='KiB'>1048576</memory>
          <vcpu>2</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{Path.Combine(state, "vda.qcow2")}'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{Path.Combine(state, "vdb.qcow2")}'/><target dev='vdb' bus='virtio'/></disk>
          </devices>
        </domain>
        """;

    private static string PushXml(string state, string prefix, string? incremental) =>
        $"<domainbackup mode='push'>{(incremental is null ? "" : $"<incremental>{incremental}</incremental>")}<disks>"
        + string.Concat(Targets.Select(t => $"<disk name='{t}' type='file'><target file='{Path.Combine(state, $"{prefix}-{t}.qcow2")}'/><driver type='qcow2'/></disk>"))
        + "</disks></domainbackup>";

    private static string PullXml(string state, string socket) =>
        $"<domainbackup mode='pull'><incremental>c2</incremental><server transport='unix' socket='{socket}'/><disks>"
        + string.Concat(Targets.Select(t => $"<disk name='{t}' type='file'><scratch file='{Path.Combine(state, $"scratch-{t}.qcow2")}'/></disk>"))
        + "</disks></domainbackup>";

    private static string Size(long bytes) => bytes >= MiB
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)MiB:0.#} MiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.#} KiB");

    private static string Elapsed(TimeSpan time) => string.Create(CultureInfo.InvariantCulture, $"{time.TotalMilliseconds:0} ms");
}
