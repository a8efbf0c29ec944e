using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// A child process shrinks an image (<c>resize --shrink</c>) and is killed with SIGKILL part
/// way. After every kill the image passes <c>qemu-img check</c> (no corruption; leaked clusters
/// allowed), has the old size or the new one, and reads exactly as before up to the new end:
/// a shrink may lose only what lies past it.
/// </summary>
public sealed class ShrinkCrashTests
{
    private const int Kills = 6;
    private const long NewSize = (5L << 20) + 1536;

    [Theory]
    [InlineData(512, 21)]
    [InlineData(4096, 22)]
    public async Task KilledShrink_LeavesACleanImage_ReadingAsBeforeUpToTheNewEnd(int clusterSize, int seed)
    {
        var random = new Random(seed);
        using var dir = new TempDirectory();
        var template = dir.File("template.qcow2");
        await CreateAsync(template, clusterSize);
        var expected = await ReadRawAsync(dir, template, "expected.raw");
        TimeSpan? whole = null;
        for (var round = 0; round <= Kills; round++)
        {
            var image = dir.File("a.qcow2");
            File.Copy(template, image, overwrite: true);

            // Round 0 runs to the end and times the shrink; the others die at a random point of it.
            var delay = whole is null ? (TimeSpan?)null : whole.Value * random.NextDouble();
            var elapsed = await CrashWriterOperation.RunAsync(["shrink", image, NewSize.ToString(System.Globalization.CultureInfo.InvariantCulture)], delay);
            whole ??= elapsed;

            var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
            Assert.True(check.ExitCode is 0 or 3, $"round {round} (killed after {delay}): qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            var json = JsonDocument.Parse(check.Stdout).RootElement;
            Assert.False(json.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, $"round {round}: {check.Stdout}");
            if (delay is null)
            {
                Assert.Equal(0, check.ExitCode);
            }

            var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", image)).RootElement;
            var size = info.GetProperty("virtual-size").GetInt64();
            Assert.True(size == NewSize || (delay is not null && size == expected.Length), $"round {round}: virtual size {size}");

            var now = await ReadRawAsync(dir, image, "now.raw");
            Assert.True(expected.AsSpan(0, (int)NewSize).SequenceEqual(now.AsSpan(0, (int)NewSize)), $"round {round} (killed after {delay}): the image reads differently before the new end");
        }
    }

    /// <summary>A 32 MiB image with data, compressed and zeroed clusters on both sides of the new end and a bitmap, so the shrink frees many clusters, L2 tables and refcount blocks.</summary>
    private static async Task CreateAsync(string image, int clusterSize)
    {
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", image, "32M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -c -P 0x22 4M 1M", "-c", "write -P 0x33 5242880 3584", "-c", "write -c -P 0x44 5308416 64k", "-c", "write -P 0x55 6M 6M", "-c", "write -z 7M 64k", "-c", "write -P 0x66 30M 2M", image);
    }

    private static async Task<byte[]> ReadRawAsync(TempDirectory dir, string image, string name)
    {
        var raw = dir.File(name);
        File.Delete(raw);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw);
        return await File.ReadAllBytesAsync(raw, TestContext.Current.CancellationToken);
    }
}
