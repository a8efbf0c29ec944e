using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// virtnbdbackup 1.9.15 and virtnbdrestore run one backup administrator's sequence against
/// the real libvirtd and against Tidemark's daemon, each with an equivalent domain: what they
/// print (exit codes, errors) and what they restore must be the same on both.
/// </summary>
public sealed partial class VirtNbdBackupDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "vn";

    // The guest's writes between backups, replayed on a raw file to give each point's content.
    private static readonly string[][] Writes =
    [
        ["write -P 0x61 0 2M"],
        ["write -P 0x62 4M 1M"],
        ["write -P 0x63 8M 1M", "write -z 0 64k"],
    ];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A chain across a second backup refused while one runs, and a transient domain
    /// (<c>virsh create</c>) whose checkpoints exist only in the backup folder, which
    /// virtnbdbackup redefines before the next incremental; each point restores to the disk
    /// at its instant.
    /// </summary>
    [Fact]
    public async Task ChainThroughATransientDomain_IsTheSameOnBoth()
    {
        Peer.Require("virtnbdbackup");
        Peer.Require("qemu-nbd");
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tdn");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = tidemarkDir.File("state") }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);
        var guestSocket = Path.Combine(tidemarkDir.File("state"), "run", Domain + ".sock");

        // libvirtd's guest is started paused (no OS to boot); Tidemark's has no vCPU to pause.
        var real = await RunAsync(new Host(libvirtd.Uri, libvirtd.LocalUri, libvirtd.Directory.Path, ["--paused"], c => libvirtd.GuestWriteAsync(Domain, "vda", c)));
        var ours = await RunAsync(new Host($"qemu+unix:///system?socket={daemon.SocketPath}", $"qemu:///system?socket={daemon.SocketPath}", tidemarkDir.Path, [], c =>
            Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", c, "-c", "flush", $"nbd+unix:///vda?socket={guestSocket}")));

        Assert.Equal(real, ours);
        Assert.Contains("Detected an active backup operation for running domain.\nERROR root virtnbdbackup - main [MainThread]: Check with [virsh domjobinfo vn]\n[exit 1]\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh create DIR/vnb/inactive.xml\nDomain 'vn' created from DIR/vnb/inactive.xml\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-list vn --name --topological\nvirtnbdbackup.0\nvirtnbdbackup.1\nvirtnbdbackup.2\n", real, StringComparison.Ordinal);
        Assert.Equal(3, Regex.Count(real, "Images are identical\\."));
    }

    private sealed record Host(string Uri, string LocalUri, string Directory, string[] StartArguments, Func<string, Task> GuestWriteAsync);

    private static async Task<string> RunAsync(Host host)
    {
        var transcript = new StringBuilder();
        var work = Path.Combine(host.Directory, "vnb");
        System.IO.Directory.CreateDirectory(work);
        var image = Path.Combine(work, "vda.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        var xml = Path.Combine(work, "vn.xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain(Domain, [new LibvirtdDisk("vda", image)]).Xml(), Ct);
        var output = Path.Combine(work, "backup");
        var expected = Path.Combine(work, "expected.raw");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", expected, "16M");

        // The host's own start arguments run but stay off the record.
        async Task<PeerResult> StartAsync(params string[] arguments)
        {
            var r = await Peer.RunAsync("virsh", ["-c", host.Uri, .. arguments, .. host.StartArguments], timeout: TimeSpan.FromMinutes(1));
            transcript.Append("$ virsh ").AppendJoin(' ', arguments).Append('\n').Append(r.Stdout).Append(r.Stderr).Append("[exit ").Append(r.ExitCode).Append("]\n");
            return r;
        }

        async Task<PeerResult> VirshAsync(params string[] arguments)
        {
            var r = await Peer.RunAsync("virsh", ["-c", host.Uri, .. arguments], timeout: TimeSpan.FromMinutes(1));
            transcript.Append("$ virsh ").AppendJoin(' ', arguments).Append('\n').Append(r.Stdout).Append(r.Stderr).Append("[exit ").Append(r.ExitCode).Append("]\n");
            return r;
        }

        async Task BackupAsync(params string[] arguments)
        {
            var r = await Peer.RunAsync(
                "virtnbdbackup",
                ["-U", host.LocalUri, "-d", Domain, "-o", output, "-n", "-S", work, "-f", Path.Combine(work, "nbd.sock"), .. arguments],
                timeout: TimeSpan.FromMinutes(2));
            transcript.Append("$ virtnbdbackup ").AppendJoin(' ', arguments).Append('\n');
            foreach (Match m in ErrorLine().Matches(r.Stdout + r.Stderr))
            {
                transcript.Append(m.Groups["message"].Value).Append('\n');
            }

            transcript.Append("[exit ").Append(r.ExitCode).Append("]\n");
        }

        // The guest writes a point's commands; the expected content follows (the guest is quiet while a backup runs).
        async Task<string> WriteAsync(int point)
        {
            foreach (var command in Writes[point])
            {
                await host.GuestWriteAsync(command);
                await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", command, expected);
            }

            var copy = Path.Combine(work, $"expected{point}.raw");
            File.Copy(expected, copy);
            return copy;
        }

        await VirshAsync("define", xml);
        await StartAsync("start", Domain);
        var points = new List<string> { await WriteAsync(0) };
        await BackupAsync("-l", "full");

        // A job left running (started only), a second backup refused, the job killed.
        await BackupAsync("-l", "copy", "-s");
        await BackupAsync("-l", "inc");
        await BackupAsync("-l", "inc", "-k");
        await WaitForNoJobAsync(host.Uri);

        points.Add(await WriteAsync(1));
        await BackupAsync("-l", "inc");

        // The same domain as a transient one: the host has no checkpoint metadata left.
        var inactive = Path.Combine(work, "inactive.xml");
        await File.WriteAllTextAsync(inactive, (await Peer.RunAsync("virsh", ["-c", host.Uri, "dumpxml", Domain, "--inactive"])).Stdout, Ct);
        await VirshAsync("destroy", Domain);
        await VirshAsync("undefine", Domain, "--checkpoints-metadata");
        await StartAsync("create", inactive);
        await VirshAsync("checkpoint-list", Domain, "--name");
        points.Add(await WriteAsync(2));
        await BackupAsync("-l", "inc");
        await VirshAsync("checkpoint-list", Domain, "--name", "--topological");

        for (var point = 0; point < points.Count; point++)
        {
            var restored = Path.Combine(work, $"restore{point}");
            var restore = await VirtNbdRestore.RunAsync(["-U", host.LocalUri, "-i", output, "-o", restored, "-n", "-f", Path.Combine(work, "nbdr.sock"), "--until", $"virtnbdbackup.{point}"], restored, TimeSpan.FromMinutes(2));
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-F", "raw", Path.Combine(restored, "vda.qcow2"), points[point]]);
            transcript.Append($"$ virtnbdrestore --until virtnbdbackup.{point}\n[exit {restore.ExitCode}]\n").Append(compare.Stdout).Append(compare.Stderr);
        }

        await VirshAsync("destroy", Domain);
        await VirshAsync("list", "--all", "--name");
        return transcript.ToString().Replace(host.Directory, "DIR", StringComparison.Ordinal);
    }

    private static async Task WaitForNoJobAsync(string uri)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!(await Peer.RunAsync("virsh", ["-c", uri, "domjobinfo", Domain])).Stdout.StartsWith("Job type:         None", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{Domain}'s job did not end");
            await Task.Delay(100);
        }
    }

    // virtnbdbackup's log lines of level ERROR and above, without their time stamp.
    [GeneratedRegex(@"(?m)^\[[^\]]*\] (?<message>(?:ERROR|CRITICAL) .*)$")]
    private static partial Regex ErrorLine();
}
