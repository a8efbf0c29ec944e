using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;
using Tidemark.Daemon;
using Tidemark.Remote.Client;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests.Support;

/// <summary>
/// Tidemark's daemon in-process with one running domain of qcow2 disks made by qemu-img, a
/// repository beside it, and the guest played by qemu-io writing over the domain's NBD socket.
/// The backup client talks to the daemon only through libvirt's protocol, as to a libvirtd.
/// </summary>
internal sealed class BackupHost : IAsyncDisposable
{
    private LoopDevice? _device;

    private readonly Dictionary<string, string> _images;

    private BackupHost(TempDirectory directory, TidemarkDaemon daemon, string domain, Dictionary<string, string> images)
    {
        Directory = directory;
        Daemon = daemon;
        Domain = domain;
        _images = images;
        Repository = new BackupRepository(directory.File("repo"));
    }

    public TempDirectory Directory { get; }

    public TidemarkDaemon Daemon { get; private set; }

    public string Domain { get; }

    /// <summary>The live image of each disk target.</summary>
    public IReadOnlyDictionary<string, string> Images => _images;

    public BackupRepository Repository { get; }

    public string Uri => $"qemu+unix:///system?socket={Daemon.SocketPath}";

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Starts the daemon and a running domain "dom" with one disk per (target, size).</summary>
    public static async Task<BackupHost> StartAsync(params (string Target, string Size)[] disks)
    {
        Peer.Require("qemu-img");
        Peer.Require("qemu-io");
        var directory = new TempDirectory("tb");
        var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = directory.File("state"), StopDomains = true }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);
        var images = new Dictionary<string, string>();
        foreach (var (target, size) in disks)
        {
            images[target] = directory.File($"{target}.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", images[target], size);
        }

        var host = new BackupHost(directory, daemon, "dom", images);
        await using var client = await host.ConnectAsync();
        var domain = await client.DefineDomainAsync(DomainXml("dom", images), 0, Ct);
        await client.CreateDomainAsync(domain, Ct);
        return host;
    }

    /// <summary>
    /// Starts the daemon and a running domain "dom" whose one disk, vda, is a qcow2 image of
    /// <paramref name="size"/> formatted on a block device (a loop device full of a pattern, as
    /// a logical volume holds old data): <c>&lt;disk type='block'&gt;</c>.
    /// </summary>
    public static async Task<BackupHost> StartOnBlockDeviceAsync(string size)
    {
        Peer.Require("qemu-img");
        Peer.Require("qemu-io");
        var directory = new TempDirectory("tb");
        var device = await LoopDevice.AttachAsync(directory.Path, 64L << 20);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", device.Path, size);
        var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = directory.File("state"), StopDomains = true }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);
        var images = new Dictionary<string, string> { ["vda"] = device.Path };
        var host = new BackupHost(directory, daemon, "dom", images) { _device = device };
        await using var client = await host.ConnectAsync();
        var domain = await client.DefineDomainAsync(DomainDocuments.WithQcow2Disks("dom", images.Select(d => (d.Key, d.Value)), blockDevices: true), 0, Ct);
        await client.CreateDomainAsync(domain, Ct);
        return host;
    }

    /// <summary>
    /// Stops the daemon (its domains stopped, <see cref="DaemonOptions.StopDomains"/>, images closed), runs <paramref name="offline"/> on the
    /// images, then starts a new daemon on the same state directory and starts the domain again.
    /// </summary>
    public async Task RestartAsync(Func<Task> offline)
    {
        await Daemon.DisposeAsync();
        await offline();
        Daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = Directory.File("state"), StopDomains = true }, NullLoggerFactory.Instance);
        await Daemon.StartAsync(Ct);
        await using var client = await ConnectAsync();
        await client.CreateDomainAsync(await client.LookupDomainByNameAsync(Domain, Ct), Ct);
    }

    public Task<LibvirtClient> ConnectAsync() => LibvirtClient.ConnectAsync(Uri, null, Ct);

    public BackupRunOptions Options(LevelRequest level = LevelRequest.Auto, List<string>? lines = null) => new()
    {
        Domain = Domain,
        Repository = Repository,
        ConnectionUri = Uri,
        Level = level,
        WorkDirectory = Directory.Path,
        Report = lines is null ? null : line =>
        {
            // Disks are copied in parallel, and each reports.
            lock (lines)
            {
                lines.Add(line);
            }
        },
    };

    public Task<BackupManifest> BackupAsync(LevelRequest level = LevelRequest.Auto, List<string>? lines = null) =>
        BackupRunner.RunAsync(Options(level, lines), Ct);

    /// <summary>qemu-io as the guest: runs each command on the disk over the domain's NBD socket, then flushes.</summary>
    public async Task GuestWriteAsync(string target, params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands.Append("flush"))
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add($"nbd+unix:///{target}?socket={Path.Combine(Directory.File("state"), "run", Domain + ".sock")}");
        var result = await Peer.RunAsync("qemu-io", args);
        result.EnsureSuccess();
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The disk's content now, as QEMU reads its image, in a raw file (the guest is quiet).</summary>
    public async Task<string> CaptureAsync(string target, string name)
    {
        var copy = Directory.File(name);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", Images[target], copy);
        return copy;
    }

    /// <summary>Hot-plugs a new qcow2 disk of <paramref name="size"/> on <paramref name="target"/> into the running domain with stock virsh (<c>attach-disk --live</c>).</summary>
    public async Task AttachDiskAsync(string target, string size)
    {
        var image = Directory.File($"{target}.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, size);
        await Peer.RunCheckedAsync("virsh", "-c", Uri, "attach-disk", Domain, image, target, "--subdriver", "qcow2", "--targetbus", "virtio", "--live");
        _images[target] = image;
    }

    /// <summary>The names of the domain's checkpoints on the host.</summary>
    public async Task<IReadOnlyList<string>> HostCheckpointsAsync()
    {
        await using var client = await ConnectAsync();
        var domain = await client.LookupDomainByNameAsync(Domain, Ct);
        return (await client.ListAllCheckpointsAsync(domain, 0, Ct)).Select(c => c.Name).Order(StringComparer.Ordinal).ToList();
    }

    private static string DomainXml(string name, IReadOnlyDictionary<string, string> images)
        => DomainDocuments.WithQcow2Disks(name, images.Select(d => (d.Key, d.Value)));

    public async ValueTask DisposeAsync()
    {
        await Daemon.DisposeAsync();
        if (_device is not null)
        {
            await _device.DisposeAsync();
        }

        Directory.Dispose();
    }
}
