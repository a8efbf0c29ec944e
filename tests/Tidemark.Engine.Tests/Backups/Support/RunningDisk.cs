using System.Net.Sockets;
using Tidemark.Engine.Backups;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>The disk layouts backup tests run on.</summary>
public enum DiskKind
{
    Qcow2,
    Raw,

    /// <summary>A qcow2 overlay over a qcow2 base, with a zero cluster hiding base data.</summary>
    Qcow2WithBacking,
}

/// <summary>
/// A 32 MiB disk, made with qemu-img and qemu-io, opened read-write as a domain would open it
/// and served to the guest as the read-write NBD export <c>vda</c> through a
/// <see cref="GuestDisk"/>. Data at [0, 4M), [8M, 12M), [20M, 21M) and a zero run at 24M;
/// holes elsewhere.
/// </summary>
internal sealed class RunningDisk : IAsyncDisposable
{
    public const long Size = 32 << 20;

    private readonly NbdServer _server;

    private RunningDisk(string path, ImageFormat format, IBlockImage live, GuestDisk guest, NbdServer server, string socket)
    {
        Path = path;
        Format = format;
        Live = live;
        Guest = guest;
        _server = server;
        Uri = $"nbd+unix:///vda?socket={socket}";
    }

    public string Path { get; }

    public ImageFormat Format { get; }

    public IBlockImage Live { get; }

    public GuestDisk Guest { get; }

    /// <summary>The guest's NBD URI.</summary>
    public string Uri { get; }

    public static async Task<RunningDisk> StartAsync(TempDirectory dir, DiskKind kind)
    {
        string path;
        ImageFormat format;
        switch (kind)
        {
            case DiskKind.Raw:
                path = dir.File("disk.raw");
                format = ImageFormat.Raw;
                await Peer.RunCheckedAsync("qemu-img", "create", "-f", "raw", path, "32M");
                await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 4M", "-c", "write -P 0x62 8M 4M", "-c", "write -P 0x63 20M 1M", path);
                break;
            case DiskKind.Qcow2:
                path = dir.File("disk.qcow2");
                format = ImageFormat.Qcow2;
                await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", path, "32M");
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 4M", "-c", "write -P 0x62 8M 4M", "-c", "write -P 0x63 20M 1M", "-c", "write -z 24M 1M", path);
                break;
            default:
                var basePath = dir.File("base.qcow2");
                path = dir.File("top.qcow2");
                format = ImageFormat.Qcow2;
                await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", basePath, "32M");
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 4M", "-c", "write -P 0x62 8M 2M", basePath);
                await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-b", basePath, "-F", "qcow2", path, "32M");
                await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x64 10M 2M", "-c", "write -P 0x63 20M 1M", "-c", "write -z 1M 64k", "-c", "write -z 24M 1M", path);
                break;
        }

        var live = await DiskImage.OpenAsync(path, format, readOnly: false);
        var guest = new GuestDisk(live);
        var socket = dir.File("guest.sock");
        var options = new NbdServerOptions();
        options.EndPoints.Add(new UnixDomainSocketEndPoint(socket));
        var server = new NbdServer(options, [new NbdExport("vda", guest)]);
        await server.StartAsync();
        return new RunningDisk(path, format, live, guest, server, socket);
    }

    /// <summary>What the domain hands the job for this disk.</summary>
    public BackupDiskSource Source(DirtyBitmap? incremental = null) => new("vda", Live, incremental, Path, Format);

    /// <summary>The disk's content now, as QEMU reads it, into a raw file (the guest must be paused).</summary>
    public async Task<string> CaptureAsync(TempDirectory dir, string name)
    {
        var copy = dir.File(name);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", Format.ToName(), "-O", "raw", Path, copy);
        return copy;
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await Live.DisposeAsync();
    }
}
