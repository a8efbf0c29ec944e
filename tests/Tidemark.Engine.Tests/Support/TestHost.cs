using System.Globalization;
using System.Security;
using Tidemark.Engine.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>One disk of a test domain: target dev, image format and whether it is read-only.</summary>
public sealed record TestDisk(string Target, string Format = "qcow2", bool ReadOnly = false, string? Path = null);

/// <summary>
/// A temporary state directory and image folder with a <see cref="DomainHost"/> on it; images
/// are made with qemu-img, domains from a libvirt-style XML. Disposing stops every running
/// domain and removes the files.
/// </summary>
public sealed class TestHost : IAsyncDisposable
{
    public const string Uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f";

    private TestHost(TempDirectory directory, DomainHost host, ManualClock clock)
    {
        Directory = directory;
        Host = host;
        Clock = clock;
    }

    public TempDirectory Directory { get; }

    public DomainHost Host { get; private set; }

    public ManualClock Clock { get; }

    public string StateRoot => Directory.File("state");

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<TestHost> CreateAsync()
    {
        // Short names: the domain's unix socket path must stay under 108 bytes.
        var directory = new TempDirectory("tm");
        var clock = new ManualClock(1_700_000_000);
        var host = await DomainHost.OpenAsync(directory.File("state"), clock, cancellationToken: Ct);
        return new TestHost(directory, host, clock);
    }

    /// <summary>Disposes the host (stopping its domains) and opens a new one on the same state directory: a restart of a daemon that stops its domains (<c>--stop-domains</c>).</summary>
    public async Task RestartAsync()
    {
        await Host.DisposeAsync();
        Host = await DomainHost.OpenAsync(StateRoot, Clock, cancellationToken: Ct);
    }

    /// <summary>Opens a new host on the state directory without stopping the old one (what is left after a crash).</summary>
    public async Task ReopenAfterCrashAsync()
    {
        Host = await DomainHost.OpenAsync(StateRoot, Clock, cancellationToken: Ct);
    }

    /// <summary>Creates the images with qemu-img (1 MiB clusters are not used: 64 KiB, qemu's default) and defines the domain.</summary>
    public async Task<Domain> DefineAsync(string name, long size, params TestDisk[] disks)
    {
        foreach (var disk in disks)
        {
            var path = ImagePath(name, disk);
            if (!File.Exists(path))
            {
                await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", disk.Format, path, size.ToString(CultureInfo.InvariantCulture));
            }
        }

        return await Host.DefineAsync(DomainXml(name, disks), Ct);
    }

    public string ImagePath(string domain, TestDisk disk) => disk.Path ?? Directory.File($"{domain}-{disk.Target}.{disk.Format}");

    public string DomainXml(string name, params TestDisk[] disks)
    {
        var devices = string.Concat(disks.Select(d => $"""
                <disk type='file' device='disk'>
                  <driver name='qemu' type='{d.Format}'/>
                  <source file='{SecurityElement.Escape(ImagePath(name, d))}'/>
                  <target dev='{d.Target}' bus='virtio'/>{(d.ReadOnly ? "\n      <readonly/>" : "")}
                </disk>

            """));
        return $"""
            <domain type='kvm'>
              <name>{name}</name>
              <uuid>{Uuid}</uuid>
              <memory unit='KiB'>1048576</memory>
              <devices>
            {devices}  </devices>
            </domain>
            """;
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        Directory.Dispose();
    }
}

/// <summary>A clock the test moves: checkpoint creation times (and default names) come from it.</summary>
public sealed class ManualClock(long unixSeconds) : TimeProvider
{
    public long Now { get; set; } = unixSeconds;

    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeSeconds(Now);
}
