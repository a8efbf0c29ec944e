using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests.Support;

/// <summary>
/// A <see cref="TidemarkDaemon"/> started in-process on a temporary state directory and socket,
/// with qcow2 images made by qemu-img beside it. Disposing stops the daemon (every running
/// domain closed and left to a next daemon, images closed) and removes the files.
/// </summary>
internal sealed class TestDaemon : IAsyncDisposable
{
    private TestDaemon(TempDirectory directory, TidemarkDaemon daemon)
    {
        Directory = directory;
        Daemon = daemon;
    }

    public TempDirectory Directory { get; }

    public TidemarkDaemon Daemon { get; }

    public string StateRoot => Directory.File("state");

    /// <summary>The URI virsh, libvirt-python and virtnbdbackup are given.</summary>
    public string Uri => $"qemu+unix:///system?socket={Daemon.SocketPath}";

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <param name="configure">Changes to the daemon's options (its state directory is the test's).</param>
    public static async Task<TestDaemon> StartAsync(Func<TempDirectory, DaemonOptions, Task<DaemonOptions>>? configure = null)
    {
        // Short names: every domain's unix socket lives under the state directory.
        var directory = new TempDirectory("td");
        var options = new DaemonOptions { StateDirectory = directory.File("state") };
        if (configure is not null)
        {
            options = await configure(directory, options);
        }

        var daemon = new TidemarkDaemon(options, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);
        return new TestDaemon(directory, daemon);
    }

    /// <summary>Creates a qcow2 image of <paramref name="size"/> bytes for disk <paramref name="target"/> of <paramref name="domain"/>.</summary>
    public async Task<string> CreateImageAsync(string domain, string target, string size = "16M")
    {
        var path = Directory.File($"{domain}-{target}.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", path, size);
        return path;
    }

    /// <summary>
    /// Defines and starts (with stock virsh) domain <paramref name="domain"/> with one qcow2 disk
    /// vda, written by qemu-io with <paramref name="write"/> before the start; returns the image.
    /// </summary>
    public async Task<string> StartDomainAsync(string domain, string write)
    {
        var image = await CreateImageAsync(domain, "vda");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", write, image);
        var xml = Directory.File($"{domain}.xml");
        await File.WriteAllTextAsync(xml, DomainXml(domain, ("vda", image)), Ct);
        await Virsh.RunOkAsync(this, "define", xml);
        await Virsh.RunOkAsync(this, "start", domain);
        return image;
    }

    /// <summary>A libvirt domain document with one qcow2 virtio disk per (target, image).</summary>
    public static string DomainXml(string name, params (string Target, string Image)[] disks) => DomainDocuments.WithQcow2Disks(name, disks);

    /// <summary>The unix socket a running domain's disks are served on.</summary>
    public string GuestSocket(string domain) => Path.Combine(StateRoot, "run", domain + ".sock");

    /// <summary>qemu-io as the guest: runs each command against the running domain's disk over NBD, then flushes.</summary>
    public async Task GuestWriteAsync(string domain, string target, params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands.Append("flush"))
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add($"nbd+unix:///{target}?socket={GuestSocket(domain)}");
        var result = await Peer.RunAsync("qemu-io", args);
        result.EnsureSuccess();
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The disk's content now, as QEMU reads it, into a raw file (the guest must be quiet).</summary>
    public async Task<string> CaptureAsync(string image, string name)
    {
        var copy = Directory.File(name);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image, copy);
        return copy;
    }

    /// <summary>Waits until the domain's backup job has ended (the domain lets go of it before its completion is announced).</summary>
    public async Task WaitForJobEndAsync(string domain)
    {
        if (Daemon.Host!.LookupByName(domain).Backup is { } backup)
        {
            await backup.Completion.WaitAsync(TimeSpan.FromMinutes(2), Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Daemon.DisposeAsync();
        Directory.Dispose();
    }
}
