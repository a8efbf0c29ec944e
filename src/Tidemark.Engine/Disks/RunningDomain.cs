using System.Net;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Domains;
using Tidemark.Formats.Domains;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;

namespace Tidemark.Engine.Disks;

/// <summary>
/// What a domain is while it runs: its disks open, one <see cref="InstantBarrier"/> and one
/// <see cref="GuestGate"/> (its paused state) for all of them, and an NBD server on the domain's unix socket (and, when asked, on 127.0.0.1) with one
/// read-write export per disk, named after its target dev, through which any NBD client is the
/// guest.
/// </summary>
/// <remarks>
/// Stopping ends the guests' connections first (no request is in flight afterwards; one waiting
/// at a shut gate is cancelled with its connection), then
/// flushes every image and closes it, which stores its persistent bitmaps with IN_USE cleared.
/// A crash skips that last step and leaves the bitmaps IN_USE: inconsistent at the next open.
/// </remarks>
public sealed class RunningDomain
{
    private readonly NbdServer _server;
    private readonly IGuestIoFailures? _ioFailures;

    // Replaced whole when a disk is attached or detached (under the domain's lock), so a
    // reader without the lock (statistics) always sees one consistent list.
    private IReadOnlyList<RunningDisk> _disks;

    private RunningDomain(InstantBarrier barrier, GuestGate gate, IReadOnlyList<RunningDisk> disks, NbdServer server, string socketPath, IGuestIoFailures? ioFailures)
    {
        _ioFailures = ioFailures;
        Barrier = barrier;
        Gate = gate;
        _disks = disks;
        _server = server;
        SocketPath = socketPath;
        TcpEndPoint = server.EndPoints.OfType<IPEndPoint>().FirstOrDefault();
    }

    /// <summary>The domain's one instant (design.md).</summary>
    public InstantBarrier Barrier { get; }

    /// <summary>The gate every guest request passes first: shut while the domain is paused.</summary>
    public GuestGate Gate { get; }

    /// <summary>The disks that have media, in domain order (attached ones last).</summary>
    public IReadOnlyList<RunningDisk> Disks => Volatile.Read(ref _disks);

    /// <summary>The unix socket the disks are served on: <c>nbd+unix:///vda?socket=SocketPath</c>.</summary>
    public string SocketPath { get; }

    /// <summary>The 127.0.0.1 address and port the disks are also served on (<c>nbd://127.0.0.1:PORT/vda</c>), or null when the domain was started without <see cref="Domains.DomainStartFlags.GuestTcp"/>.</summary>
    public IPEndPoint? TcpEndPoint { get; }

    /// <summary>The disk whose target dev is <paramref name="target"/>, or null.</summary>
    public RunningDisk? DiskByTarget(string target) => Disks.FirstOrDefault(d => d.Target == target);

    /// <param name="tcpPort">With <see cref="DomainStartFlags.GuestTcp"/>: the port to listen on, 0 for one the kernel picks.</param>
    internal static async Task<RunningDomain> StartAsync(DomainDefinition definition, string socketPath, DomainStartFlags flags, int tcpPort, ILoggerFactory? loggerFactory, IGuestIoFailures? ioFailures, CancellationToken cancellationToken)
    {
        var barrier = new InstantBarrier();

        // Started paused, the gate is shut before the server accepts anything, so no guest
        // request gets through before the resume.
        var gate = new GuestGate(paused: flags.HasFlag(DomainStartFlags.Paused));
        var disks = new List<RunningDisk>();
        try
        {
            foreach (var disk in definition.Disks)
            {
                if (disk.IsEmpty)
                {
                    continue;
                }

                var (image, format) = await DiskImages.OpenAsync(disk, disk.ReadOnly, cancellationToken).ConfigureAwait(false);
                disks.Add(new RunningDisk(disk, image, format, barrier, gate, ioFailures));
            }

            Directory.CreateDirectory(Path.GetDirectoryName(socketPath)!);
            var options = new NbdServerOptions();
            options.EndPoints.Add(UnixSocketPath.EndPoint(socketPath));
            if (flags.HasFlag(DomainStartFlags.GuestTcp))
            {
                options.EndPoints.Add(new IPEndPoint(IPAddress.Loopback, tcpPort));
            }
            var server = new NbdServer(options, disks.Select(ExportOf), loggerFactory);
            try
            {
                await server.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                // The unix socket may be bound already (a TCP port that is taken fails after
                // it): disposing closes it and removes its file, so a retry can claim it.
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            return new RunningDomain(barrier, gate, disks, server, socketPath, ioFailures);
        }
        catch
        {
            foreach (var disk in disks)
            {
                await disk.LiveImage.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>
    /// Hot-plugs <paramref name="disk"/>: opens its image as a start does and serves it as one
    /// more export, behind the domain's barrier and gate. Called under the domain's lock.
    /// </summary>
    /// <exception cref="EngineException">The image cannot be opened (missing, locked, unsupported).</exception>
    internal async Task<RunningDisk> AttachDiskAsync(DomainDisk disk, CancellationToken cancellationToken)
    {
        var (image, format) = await DiskImages.OpenAsync(disk, disk.ReadOnly, cancellationToken).ConfigureAwait(false);
        var running = new RunningDisk(disk, image, format, Barrier, Gate, _ioFailures);
        Volatile.Write(ref _disks, [.. Disks, running]);
        _server.AddExport(ExportOf(running));
        return running;
    }

    /// <summary>
    /// Unplugs <paramref name="disk"/>: its export goes and its guests'
    /// connections end (their requests in flight answered first), then its image is flushed
    /// and closed, storing its bitmaps. Called under the domain's lock.
    /// </summary>
    /// <exception cref="EngineException">The image could not be flushed or closed (its bitmaps then stay IN_USE: broken).</exception>
    internal async Task DetachDiskAsync(RunningDisk disk)
    {
        await _server.RemoveExportAsync(disk.Target).ConfigureAwait(false);
        Volatile.Write(ref _disks, [.. Disks.Where(d => d != disk)]);
        Exception? failure = null;
        try
        {
            if (!disk.LiveImage.IsReadOnly)
            {
                await disk.LiveImage.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = e;
        }

        try
        {
            await disk.LiveImage.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure ??= e;
        }

        if (failure is not null)
        {
            throw DiskImages.Failure($"cannot close disk '{disk.Target}'", failure);
        }
    }

    private static NbdExport ExportOf(RunningDisk disk) => new(disk.Target, disk.Guest)
    {
        ReadOnly = disk.Definition.ReadOnly,
        Description = disk.Definition.SourcePath,
        Statistics = disk.Statistics,
        ReadsWhole = disk.Definition.CopyOnRead,

        // Every connection reaches the same image object, whose flush makes every completed
        // write durable (formats.md §4.8), so several guest connections are safe.
        MultiConn = true,
    };

    /// <summary>Ends the guests' connections, flushes and closes every image (storing bitmaps). The first failure is rethrown after every disk was closed.</summary>
    internal async Task StopAsync()
    {
        await DisconnectGuestsAsync().ConfigureAwait(false);
        var first = await FlushDisksAsync().ConfigureAwait(false);
        await CloseDisksAsync(first).ConfigureAwait(false);
    }

    /// <summary>Ends the guests' connections: no guest request is in flight afterwards, and none comes.</summary>
    internal async Task DisconnectGuestsAsync() => await _server.DisposeAsync().ConfigureAwait(false);

    /// <summary>Flushes every writable image (data and metadata durable); returns the first failure, after trying every disk.</summary>
    internal async Task<Exception?> FlushDisksAsync()
    {
        Exception? first = null;
        foreach (var disk in Disks)
        {
            try
            {
                if (!disk.LiveImage.IsReadOnly)
                {
                    await disk.LiveImage.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                first ??= e;
            }
        }

        return first;
    }

    /// <summary>Closes every image (storing bitmaps); throws <paramref name="earlier"/> or the first failure once every disk was closed.</summary>
    internal async Task CloseDisksAsync(Exception? earlier = null)
    {
        var first = earlier;
        foreach (var disk in Disks)
        {
            try
            {
                await disk.LiveImage.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                first ??= e;
            }
        }

        if (first is not null)
        {
            throw DiskImages.Failure("cannot close the domain's disks", first);
        }
    }
}
