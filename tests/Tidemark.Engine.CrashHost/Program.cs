using System.Globalization;
using System.Net.Sockets;
using Tidemark.Engine.Domains;
using Tidemark.Nbd.Client;

// A child process for the engine crash tests. It opens the engine on a state directory, starts
// the domain (disks vda and vdb), prints "ready SOCKET", then runs one scenario until the test
// SIGKILLs it while guests write through the socket:
//   writes       nothing more: the guests' writes are all there is
//   checkpoints  checkpoints k0, k1, … in a loop
//   offline      the same, with the domain left shut off: the bitmaps go into the qcow2 files
//                (prints "ready -", since no socket serves the disks)
//   push         push backups in a loop into WORK_DIR/bN-vda.qcow2 and bN-vdb.qcow2, each with
//                checkpoint bN, full and incremental (from the previous one) in turn
//   pull         one incremental pull backup from c0 with checkpoint p0 (scratch files and
//                socket in WORK_DIR), read over and over by a client of its exports
//   handover     once WORK_DIR/go exists, and PAUSE_MS after, closes the host leaving the
//                domain to the next one (DomainHost.CloseKeepingDomainsAsync), printing
//                "handing over" before and "handed over" after, then waits
//   handover-push  the same, once a full push of vda and vdb into WORK_DIR/j-vda.qcow2 and
//                j-vdb.qcow2 has begun (printing "began"), its target writes slowed down
//                (SlowStore) so that the hand-over finds it copying, and WORK_DIR/written
//                exists (the guests have written since)
//   handover-pull  the same with a full pull backup of vda and vdb (scratch files
//                WORK_DIR/j-vda.scratch and j-vdb.scratch, socket WORK_DIR/pull.sock)
// It prints "creating NAME" as a checkpoint's creation begins, "checkpoint NAME" once it has
// returned, and "done NAME" once
// the push that created checkpoint NAME has completed and let go of its job.
if (args.Length != 5)
{
    await Console.Error.WriteLineAsync("usage: crash-host STATE_DIR DOMAIN writes|checkpoints|offline|push|pull|handover|handover-push|handover-pull PAUSE_MS WORK_DIR");
    return 2;
}

var (scenario, pause, work) = (args[2], int.Parse(args[3], CultureInfo.InvariantCulture), args[4]);
var host = await DomainHost.OpenAsync(args[0]);
var domain = host.LookupByName(args[1]);
if (scenario != "offline")
{
    await domain.StartAsync();
}

var stdout = Console.Out;
async Task SayAsync(string line)
{
    await stdout.WriteLineAsync(line);
    await stdout.FlushAsync();
}

await SayAsync($"ready {domain.Running?.SocketPath ?? "-"}");
switch (scenario)
{
    case "writes":
        await Task.Delay(Timeout.Infinite);
        break;

    case "checkpoints" or "offline":
        for (var i = 0; ; i++)
        {
            await Task.Delay(pause);
            await SayAsync($"creating k{i}");
            var name = await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>k{i}</name></domaincheckpoint>");
            await SayAsync($"checkpoint {name}");
        }

    case "push":
        for (var i = 0; ; i++)
        {
            await Task.Delay(pause);
            var incremental = i % 2 == 1 ? $"<incremental>b{i - 1}</incremental>" : "";
            var disks = string.Concat(((string[])["vda", "vdb"]).Select(d => $"<disk name='{d}' type='file'><target file='{Path.Combine(work, $"b{i}-{d}.qcow2")}'/><driver type='qcow2'/></disk>"));
            var backup = await domain.BeginBackupAsync($"<domainbackup mode='push'>{incremental}<disks>{disks}</disks></domainbackup>", $"<domaincheckpoint><name>b{i}</name></domaincheckpoint>");
            await SayAsync($"checkpoint b{i}");
            var info = await backup.Completion;
            if (!info.Success)
            {
                await Console.Error.WriteLineAsync($"push b{i} ended {info.Phase}: {info.ErrorMessage}");
                return 1;
            }

            await SayAsync($"done b{i}");
        }

    case "pull":
        {
            var socket = Path.Combine(work, "pull.sock");
            var disks = string.Concat(((string[])["vda", "vdb"]).Select(d => $"<disk name='{d}' type='file'><scratch file='{Path.Combine(work, $"p0-{d}.scratch")}'/></disk>"));
            await domain.BeginBackupAsync($"<domainbackup mode='pull'><incremental>c0</incremental><server transport='unix' socket='{socket}'/><disks>{disks}</disks></domainbackup>", "<domaincheckpoint><name>p0</name></domaincheckpoint>");
            await SayAsync("checkpoint p0");
            await using var reader = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = "vda" });
            var buffer = new byte[256 << 10];
            for (var offset = 0L; ; offset = (offset + buffer.Length) % reader.Size)
            {
                await reader.ReadAsync(offset, buffer);
                await Task.Delay(pause / 10);
            }
        }

    case "handover" or "handover-push" or "handover-pull":
        // The test says when its guests have written (or, before a push, when its instant is captured).
        while (!File.Exists(Path.Combine(work, "go")))
        {
            await Task.Delay(5);
        }

        if (scenario == "handover-push")
        {
            domain.BackupStoreWrapper = store => new SlowStore(store);
            var disks = string.Concat(((string[])["vda", "vdb"]).Select(d => $"<disk name='{d}' type='file'><target file='{Path.Combine(work, $"j-{d}.qcow2")}'/><driver type='qcow2'/></disk>"));
            await domain.BeginBackupAsync($"<domainbackup mode='push'><disks>{disks}</disks></domainbackup>", null);
        }
        else if (scenario == "handover-pull")
        {
            var disks = string.Concat(((string[])["vda", "vdb"]).Select(d => $"<disk name='{d}' type='file'><scratch file='{Path.Combine(work, $"j-{d}.scratch")}'/></disk>"));
            await domain.BeginBackupAsync($"<domainbackup mode='pull'><server transport='unix' socket='{Path.Combine(work, "pull.sock")}'/><disks>{disks}</disks></domainbackup>", null);
        }

        if (scenario != "handover")
        {
            await SayAsync("began");
            while (!File.Exists(Path.Combine(work, "written")))
            {
                await Task.Delay(5);
            }
        }

        await Task.Delay(pause);
        await SayAsync("handing over");
        await host.CloseKeepingDomainsAsync();
        await SayAsync("handed over");
        await Task.Delay(Timeout.Infinite);
        break;

    default:
        await Console.Error.WriteLineAsync($"unknown scenario '{scenario}'");
        return 2;
}

return 0;

/// <summary>A push target whose writes take 200 ms each: the push of a disk with 12 MiB of data then lasts about 600 ms.</summary>
internal sealed class SlowStore(Tidemark.Storage.IBlockImage inner) : Tidemark.Storage.IBlockImage
{
    public long VirtualSize => inner.VirtualSize;

    public bool IsReadOnly => inner.IsReadOnly;

    public int AllocationGranularity => inner.AllocationGranularity;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, Tidemark.Storage.WriteFlags flags = Tidemark.Storage.WriteFlags.None, CancellationToken cancellationToken = default)
    {
        await Task.Delay(200, cancellationToken);
        await inner.WriteAsync(offset, data, flags, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, Tidemark.Storage.WriteFlags flags = Tidemark.Storage.WriteFlags.None, CancellationToken cancellationToken = default)
        => inner.WriteZeroesAsync(offset, length, flags, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<Tidemark.Storage.BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
        => inner.GetExtentsAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
