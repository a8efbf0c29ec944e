using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// A child process commits or safely rebases a chain and is killed with SIGKILL part way. After
/// every kill each image of the chain passes <c>qemu-img check</c> (no corruption; leaked
/// clusters allowed, as a killed QEMU leaves them) and the top reads exactly as before
/// (<c>qemu-img compare</c> with a raw copy taken first): both operations keep the top's
/// content, so there is no "old or new" to choose between.
/// </summary>
public sealed class ChainCrashTests
{
    private const int KillsPerVerb = 6;

    [Theory]
    [InlineData("commit", 65536, 11)]
    [InlineData("rebase", 65536, 12)]
    [InlineData("commit", 4096, 13)]
    public async Task KilledChainOperation_LeavesConsistentImages_AndTheTopReadingAsBefore(string verb, int clusterSize, int seed)
    {
        var random = new Random(seed);
        TimeSpan? whole = null;
        for (var round = 0; round <= KillsPerVerb; round++)
        {
            using var dir = new TempDirectory();
            await CreateChainAsync(dir, clusterSize);
            var expected = dir.File("expected.raw");
            await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", dir.File("top.qcow2"), expected);

            // Round 0 runs to the end and times the operation; the others die at a random point of it.
            var delay = whole is null ? (TimeSpan?)null : whole.Value * random.NextDouble();
            var elapsed = await CrashWriterOperation.RunAsync(verb == "commit" ? ["commit", dir.File("top.qcow2")] : ["rebase", dir.File("top.qcow2"), "base.qcow2"], delay);
            whole ??= elapsed;

            foreach (var image in new[] { "base.qcow2", "mid.qcow2", "top.qcow2" })
            {
                var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", dir.File(image)]);
                Assert.True(check.ExitCode is 0 or 3, $"{verb} round {round}: qemu-img check {image} exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
                var json = JsonDocument.Parse(check.Stdout).RootElement;
                Assert.False(json.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, $"{verb} round {round}: {image}: {check.Stdout}");
            }

            var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", expected, dir.File("top.qcow2")]);
            Assert.True(compare.ExitCode == 0, $"{verb} round {round} (killed after {delay}): the top reads differently: {compare.Stdout}{compare.Stderr}");
        }
    }

    /// <summary>A 32 MiB chain whose layers overlap, with zeroes over data, so a commit or rebase moves many clusters.</summary>
    private static async Task CreateChainAsync(TempDirectory dir, int clusterSize)
    {
        var options = $"cluster_size={clusterSize}";
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, dir.File("base.qcow2"), "32M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "base.qcow2", "-F", "qcow2", dir.File("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "mid.qcow2", "-F", "qcow2", dir.File("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", dir.File("mid.qcow2"), "b0");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 24M", dir.File("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 4M 12M", "-c", "write -z 20M 2M", dir.File("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 6M 3M", "-c", "write -c -P 0x34 12M 2M", "-c", "write -z 14M 1M", "-c", "write -P 0x35 26M 4M", dir.File("top.qcow2"));
    }
}
