using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The backup client as users run it, against <c>tidemark daemon</c> in another process: a
/// full and an incremental of a domain written by qemu-io, listed, restored to what qemu-img
/// captured at each point, verified; then a flipped byte makes <c>verify</c> exit 1 naming
/// the file and offset, and <c>restore</c> refuses to overwrite without <c>--force</c>.
/// </summary>
public sealed class BackupCommandTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task BackupRunListRestoreVerify_AgainstTheDaemon()
    {
        Peer.Require("virsh");
        using var dir = new TempDirectory("cli-bk");
        var image = dir.File("vm.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        var state = dir.File("state");
        var socket = dir.File("sock");
        var uri = $"qemu+unix:///system?socket={socket}";
        var repo = dir.File("repo");
        await using var daemon = await CliProcess.StartAsync("daemon", "--state-dir", state, "--socket", socket);
        await UnixSocketListener.WaitAsync(socket, cancellationToken: Token);
        var xml = dir.File("vm.xml");
        await File.WriteAllTextAsync(xml, $"<domain type='kvm'><name>vm</name><memory>1048576</memory><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>", Token);
        await Peer.RunCheckedAsync("virsh", "-c", uri, "define", xml);
        await Peer.RunCheckedAsync("virsh", "-c", uri, "start", "vm");
        var guest = $"nbd+unix:///vda?socket={Path.Combine(state, "run", "vm.sock")}";

        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 1M", "-c", "flush", guest);
        var full = await CliRun.RunAsync("backup", "run", "vm", "--repo", repo, "-c", uri, "--compress", "zstd");
        Assert.True(full.ExitCode == 0, full.Stderr);
        Assert.Contains("vda: full (no previous backup in the repository)", full.Stdout, StringComparison.Ordinal);
        var first = dir.File("i0.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", image, first);

        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x62 4M 128k", "-c", "flush", guest);
        var second = dir.File("i1.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-O", "raw", image, second);
        var inc = await CliRun.RunAsync("backup", "run", "vm", "--repo", repo, "-c", uri, "--level", "inc", "--json");
        Assert.True(inc.ExitCode == 0, inc.Stderr);
        Assert.Contains("\"level\": \"incremental\"", inc.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"data-bytes\": 131072", inc.Stdout, StringComparison.Ordinal);

        var list = await CliRun.RunAsync("backup", "list", "--repo", repo, "--json");
        Assert.Equal(0, list.ExitCode);
        Assert.Equal(2, list.Stdout.Split("\"checkpoint\": \"tidemark.").Length - 1);
        Assert.Contains("\"compression\": \"zstd\"", list.Stdout, StringComparison.Ordinal);

        string[] names =
        [
            Regex.Match(full.Stdout, "backup (tidemark\\.[0-9a-f]+\\.0) of domain 'vm' complete").Groups[1].Value,
            Regex.Match(inc.Stdout, "\"checkpoint\": \"(tidemark\\.[0-9a-f]+\\.1)\"").Groups[1].Value,
        ];

        // The host keeps the checkpoint the chain continues from, no other.
        Assert.Equal(names[1] + "\n\n", await Peer.RunCheckedAsync("virsh", "-c", uri, "checkpoint-list", "vm", "--name"));

        var restored0 = dir.File("r0.raw");
        var restore = await CliRun.RunAsync("restore", "--repo", repo, "--domain", "vm", "--checkpoint", names[0], "--output", restored0);
        Assert.True(restore.ExitCode == 0, restore.Stderr);
        Assert.Equal($"restored disk vda of domain 'vm' at {names[0]} to {restored0}\n", restore.Stdout);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", restored0, first])).ExitCode);
        var restored1 = dir.File("r1.qcow2");
        Assert.Equal(0, (await CliRun.RunAsync("restore", "--repo", repo, "--domain", "vm", "--output", restored1, "-O", "qcow2")).ExitCode);
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", restored1, second])).ExitCode);

        var again = await CliRun.RunAsync("restore", "--repo", repo, "--domain", "vm", "--output", restored0);
        Assert.Equal(1, again.ExitCode);
        Assert.Equal($"error: output '{restored0}' exists; use --force to replace it\n", again.Stderr);

        // An output the host refuses: one error line, exit 1, no crash.
        foreach (var refused in new[] { dir.File("no-such-dir/x.raw"), "/proc/tidemark-x.raw" })
        {
            var failed = await CliRun.RunAsync("restore", "--repo", repo, "--domain", "vm", "--output", refused);
            Assert.Equal(1, failed.ExitCode);
            Assert.StartsWith("error: ", failed.Stderr, StringComparison.Ordinal);
            Assert.Single(failed.Stderr.TrimEnd('\n').Split('\n'));
        }

        var verified = await CliRun.RunAsync("verify", "--repo", repo);
        Assert.True(verified.ExitCode == 0, verified.Stdout + verified.Stderr);
        Assert.StartsWith("verify passed: 2 backup(s), 2 chain file(s)", verified.Stdout, StringComparison.Ordinal);

        // A byte of the incremental's stored data flipped: its only data cluster is the last one written.
        var incFile = Path.Combine(repo, "vm", "vda", names[1] + ".qcow2");
        await using (var stream = new FileStream(incFile, FileMode.Open, FileAccess.ReadWrite))
        {
            stream.Position = stream.Length - 1000;
            var b = stream.ReadByte();
            stream.Position = stream.Length - 1000;
            stream.WriteByte((byte)(b ^ 0x5a));
        }

        var damaged = await CliRun.RunAsync("verify", "--repo", repo, "--domain", "vm");
        Assert.Equal(1, damaged.ExitCode);
        Assert.StartsWith($"damaged: vm/vda/{names[1]}.qcow2: offset 4194304: extent of 131072 bytes has checksum ", damaged.Stdout, StringComparison.Ordinal);
        Assert.Contains("verify FAILED (1 problem(s))", damaged.Stdout, StringComparison.Ordinal);
    }
}
