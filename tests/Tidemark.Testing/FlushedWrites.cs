using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Tidemark.Nbd.Client;

namespace Tidemark.Testing;

/// <summary>
/// Guests that write 64 KiB clusters (a pattern, or write-zeroes) at random offsets, each
/// followed by a flush, until a kill cuts them off; and the judgement afterwards: every write
/// the guest saw flushed reads back (qemu-io) and <c>qemu-img check</c> finds no corruption.
/// </summary>
public sealed class FlushedWrites
{
    public const int Cluster = 64 << 10;

    private readonly ConcurrentDictionary<(string Disk, long Offset), int> _acknowledged = new();

    /// <summary>True once every one of <paramref name="disks"/> has had a write acknowledged.</summary>
    public bool Covers(IEnumerable<string> disks) => disks.All(d => _acknowledged.Keys.Any(k => k.Disk == d));

    /// <summary>
    /// Waits (up to 30 s) until every disk has had a write acknowledged, so every trial judges
    /// some, or until a writer has ended.
    /// </summary>
    public async Task WaitForEveryDiskAsync(IReadOnlyCollection<string> disks, IReadOnlyCollection<Task> writers, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!Covers(disks) && DateTime.UtcNow < deadline && !writers.Any(w => w.IsCompleted))
        {
            await Task.Delay(5, cancellationToken);
        }
    }

    /// <summary>One guest of <paramref name="disk"/> (<paramref name="size"/> bytes): writes and flushes until <paramref name="stop"/>.</summary>
    public async Task WriteAsync(Func<CancellationToken, Task<NbdClient>> connect, string disk, long size, Random random, CancellationToken stop)
    {
        var buffer = new byte[Cluster];
        try
        {
            await using var client = await connect(stop);
            while (!stop.IsCancellationRequested)
            {
                var offset = (long)random.Next((int)(size / Cluster)) * Cluster;
                var pattern = random.Next(256);

                // In flight, the cluster holds the old or the new bytes (or a mix); flushed, the new.
                _acknowledged.TryRemove((disk, offset), out _);
                if (pattern == 0)
                {
                    await client.WriteZeroesAsync(offset, Cluster, cancellationToken: stop);
                }
                else
                {
                    buffer.AsSpan().Fill((byte)pattern);
                    await client.WriteAsync(offset, buffer, cancellationToken: stop);
                }

                await client.FlushAsync(stop);
                _acknowledged[(disk, offset)] = pattern;
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
            // The kill cut the connection (or the test stopped the guest first).
        }
    }

    /// <summary>
    /// <paramref name="image"/> (qcow2, the disk <paramref name="disk"/>) passes
    /// <c>qemu-img check</c> (leaks allowed: they are what a kill may leave, as with QEMU) and
    /// holds every write its guest saw flushed.
    /// </summary>
    public async Task AssertKeptAsync(string disk, string image)
    {
        await AssertNoCorruptionAsync(image);
        var reads = _acknowledged.Where(a => a.Key.Disk == disk)
            .SelectMany(a => (string[])["-c", string.Create(CultureInfo.InvariantCulture, $"read -P {a.Value} {a.Key.Offset} 64k")]).ToList();
        Assert.True(reads.Count > 0, $"no write to {disk} was acknowledged before the kill");
        var read = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads, image]);
        Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal), $"a flushed write was lost on {disk}: {read.Stdout}{read.Stderr}");
    }

    /// <summary><c>qemu-img check</c> of a qcow2 image finds no corruption (exit 0, or 3 for leaks only).</summary>
    public static async Task AssertNoCorruptionAsync(string image)
    {
        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
        Assert.True(check.ExitCode is 0 or 3, $"qemu-img check {image} exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
        Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, check.Stdout);
    }
}
