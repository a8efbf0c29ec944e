using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Tidemark.Nbd;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Testing;

/// <summary>
/// Guests that write 64 KiB clusters (a pattern, or write-zeroes) at random offsets, each
/// followed by a flush or, when <see cref="FuaWrites"/> is set, about half of them sent with
/// NBD_CMD_FLAG_FUA and no flush, until a kill cuts them off; and the judgement afterwards:
/// every write the guest saw flushed, or saw acknowledged with FUA, reads back (qemu-io) and
/// <c>qemu-img check</c> finds no corruption.
/// </summary>
/// <remarks>
/// A FUA write is replied to only once its data is durable (/work/shared/spec/formats.md §4.4,
/// command flag FUA 0x01), so an acknowledged FUA write must survive a kill as a flushed one
/// does (/work/shared/design.md, rule 1).
/// </remarks>
public sealed class FlushedWrites
{
    public const int Cluster = 64 << 10;

    private readonly ConcurrentDictionary<(string Disk, long Offset), Acknowledged> _acknowledged = new();

    // Every write the server replied to, flushed or not.
    private readonly ConcurrentDictionary<(string Disk, long Offset), Acknowledged> _replied = new();

    // Per disk, the number of the last write a completed flush covered: a FUA write numbered
    // above it was kept by FUA alone when the kill came.
    private readonly ConcurrentDictionary<string, long> _flushedThrough = new();
    private int _fuaOnlyJudged;

    /// <summary>About half the writes are FUA writes with no flush after them (the rest are flushed as always).</summary>
    public bool FuaWrites { get; init; }

    /// <summary>The server may end the connection itself (a daemon handing its domains over): the guest then stops writing, where otherwise it fails.</summary>
    public bool ServerMayLeave { get; init; }

    /// <summary>How many judged writes (in <see cref="AssertKeptAsync"/>) only FUA made durable: no flush came after them before the kill.</summary>
    public int FuaOnlyJudged => _fuaOnlyJudged;

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
            for (var number = 1L; !stop.IsCancellationRequested; number++)
            {
                var offset = (long)random.Next((int)(size / Cluster)) * Cluster;
                var pattern = random.Next(256);
                var fua = FuaWrites && random.Next(2) == 0;
                var flags = fua ? NbdCommandFlags.Fua : NbdCommandFlags.None;

                // In flight, the cluster holds the old or the new bytes (or a mix); flushed, or
                // acknowledged with FUA, the new.
                _acknowledged.TryRemove((disk, offset), out _);
                _replied.TryRemove((disk, offset), out _);
                if (pattern == 0)
                {
                    await client.WriteZeroesAsync(offset, Cluster, flags, stop);
                }
                else
                {
                    buffer.AsSpan().Fill((byte)pattern);
                    await client.WriteAsync(offset, buffer, flags, stop);
                }

                _replied[(disk, offset)] = new(pattern, number, fua);

                if (!fua)
                {
                    // One request at a time: the flush covers this write and every one before it.
                    await client.FlushAsync(stop);
                    _flushedThrough[disk] = number;
                }

                _acknowledged[(disk, offset)] = new(pattern, number, fua);
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
            // The kill cut the connection (or the test stopped the guest first).
        }
        catch (Exception e) when (ServerMayLeave && e is NbdException or IOException or System.Net.Sockets.SocketException)
        {
            // The server closed the connection: the guest waits for no one.
        }
    }

    /// <summary>
    /// <paramref name="image"/> (qcow2, the disk <paramref name="disk"/>) passes
    /// <c>qemu-img check</c> (leaks allowed: they are what a kill may leave, as with QEMU) and
    /// holds every write its guest saw flushed or saw acknowledged with FUA.
    /// </summary>
    /// <param name="everyReply">Judge every write the server replied to, flushed or not: what a host handing its domain over, which then comes back for the guest, owes it.</param>
    public async Task AssertKeptAsync(string disk, string image, bool everyReply = false)
    {
        await AssertNoCorruptionAsync(image);
        var kept = (everyReply ? _replied : _acknowledged).Where(a => a.Key.Disk == disk).ToList();
        Assert.True(kept.Count > 0, $"no write to {disk} was acknowledged before the kill");
        var flushedThrough = _flushedThrough.GetValueOrDefault(disk);
        var fuaOnly = kept.Where(a => a.Value.Fua && a.Value.Number > flushedThrough).ToList();
        Interlocked.Add(ref _fuaOnlyJudged, fuaOnly.Count);
        var reads = kept.SelectMany(a => (string[])["-c", string.Create(CultureInfo.InvariantCulture, $"read -P {a.Value.Pattern} {a.Key.Offset} 64k")]).ToList();
        var read = await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads, image]);
        var fuaOffsets = string.Join(", ", fuaOnly.Select(a => a.Key.Offset));
        Assert.True(read.ExitCode == 0 && !read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal), $"a flushed or FUA write was lost on {disk} (acknowledged with FUA and no flush after: offsets [{fuaOffsets}]): {read.Stdout}{read.Stderr}");
    }

    /// <summary><c>qemu-img check</c> of a qcow2 image finds no corruption (exit 0, or 3 for leaks only).</summary>
    public static async Task AssertNoCorruptionAsync(string image)
    {
        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
        Assert.True(check.ExitCode is 0 or 3, $"qemu-img check {image} exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
        Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out var c) && c.GetInt64() > 0, check.Stdout);
    }

    /// <summary>An acknowledged write: its pattern (0 for write-zeroes), its number in its guest's sequence, and whether it was a FUA write.</summary>
    private readonly record struct Acknowledged(int Pattern, long Number, bool Fua);
}
