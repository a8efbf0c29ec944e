using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>One backup run: its checkpoint, its output, and the disk captured just before it.</summary>
internal sealed record BackupPoint(string Checkpoint, string Output, string Capture);

/// <summary>
/// <c>tidemark daemon</c> in its own process with one running domain "vm" of one 256 MiB qcow2
/// disk, which a test writes as the guest (qemu-io over the domain's NBD socket), backs up with
/// the native <c>backup run</c> and restores, judged against what qemu-img captured.
/// </summary>
internal sealed class DaemonHost : IAsyncDisposable
{
    private readonly TempDirectory _dir;
    private CliProcess _daemon;
    private int _points;

    private DaemonHost(TempDirectory dir, CliProcess daemon)
    {
        _dir = dir;
        _daemon = daemon;
    }

    public string Repo => _dir.File("repo");

    /// <summary>The test's directory, for files of its own.</summary>
    public TempDirectory Directory => _dir;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    public string Uri => $"qemu+unix:///system?socket={_dir.File("sock")}";

    /// <summary>The domain's disk image, which the daemon holds open while it runs.</summary>
    public string Image => _dir.File("vm.qcow2");

    public static async Task<DaemonHost> StartAsync(string name)
    {
        Peer.Require("virsh");
        var dir = new TempDirectory(name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", dir.File("vm.qcow2"), "256M");
        var host = new DaemonHost(dir, await StartDaemonAsync(dir));
        var xml = dir.File("vm.xml");
        await File.WriteAllTextAsync(xml, DomainDocuments.WithQcow2Disks("vm", [("vda", host.Image)]), Token);
        await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "define", xml);
        await Peer.RunCheckedAsync("virsh", "-c", host.Uri, "start", "vm");
        return host;
    }

    public async Task KillAndRestartDaemonAsync()
    {
        await KillDaemonAsync();
        await RestartDaemonAsync();
    }

    /// <summary>SIGKILLs the daemon: it stores nothing on the way out (its images' bitmaps stay as they are on disk).</summary>
    public async Task KillDaemonAsync()
    {
        Assert.Equal(137, (await _daemon.StopAsync(CliProcess.SIGKILL)).ExitCode);
    }

    /// <summary>Starts the daemon again on the same state directory and starts the domain.</summary>
    /// <summary>Starts the daemon again and the domain in it, after <paramref name="beforeStart"/> (checks of the shut-off domain).</summary>
    public async Task RestartDaemonAsync(Func<Task>? beforeStart = null)
    {
        await _daemon.DisposeAsync();
        _daemon = await StartDaemonAsync(_dir);
        if (beforeStart is not null)
        {
            await beforeStart();
        }

        await Peer.RunCheckedAsync("virsh", "-c", Uri, "start", "vm");
    }

    /// <summary>Runs each qemu-io command against the guest's disk, then flushes.</summary>
    public async Task GuestWriteAsync(params string[] commands) =>
        await Peer.RunCheckedAsync("qemu-io", ["-f", "raw", .. commands.SelectMany(c => new[] { "-c", c }), "-c", "flush", $"nbd+unix:///vda?socket={Path.Combine(_dir.File("state"), "run", "vm.sock")}"]);

    /// <summary>True when the repository still lists the backup of <paramref name="point"/>.</summary>
    public bool Lists(BackupPoint point) => File.Exists(Path.Combine(Repo, "vm", point.Checkpoint + ".json"));

    public async Task<BackupPoint> BackupAsync()
    {
        var capture = _dir.File($"p{_points++}.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", Image, capture);
        var run = await CliRun.RunAsync("backup", "run", "vm", "--repo", Repo, "-c", Uri);
        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
        var checkpoint = Regex.Match(run.Stdout, "backup (tidemark\\.[0-9a-f]+\\.\\d+) of domain 'vm' complete").Groups[1].Value;
        return new BackupPoint(checkpoint, run.Stdout, capture);
    }

    public async Task AssertRestoresAsync(BackupPoint point)
    {
        var output = _dir.File($"r-{point.Checkpoint}-{Guid.NewGuid():N}.raw");
        var restore = await CliRun.RunAsync("restore", "--repo", Repo, "--domain", "vm", "--checkpoint", point.Checkpoint, "--output", output);
        Assert.True(restore.ExitCode == 0, restore.Stderr);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", output, point.Capture]);
        Assert.True(compare.ExitCode == 0, $"{point.Checkpoint}: {compare.Stdout}{compare.Stderr}");
        File.Delete(output);
    }

    public async ValueTask DisposeAsync()
    {
        await _daemon.DisposeAsync();
        _dir.Dispose();
    }

    private static async Task<CliProcess> StartDaemonAsync(TempDirectory dir)
    {
        var daemon = await CliProcess.StartAsync("daemon", "--state-dir", dir.File("state"), "--socket", dir.File("sock"));
        await UnixSocketListener.WaitAsync(dir.File("sock"), cancellationToken: Token);
        return daemon;
    }
}
