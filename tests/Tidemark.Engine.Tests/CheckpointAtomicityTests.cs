using System.Collections.Concurrent;
using System.Net.Sockets;
using Tidemark.Engine.Tests.Support;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Checkpoint atomicity across disks (design.md, "One instant per domain"): two disks written
/// by concurrent NBD clients, several requests in flight each, while checkpoints are taken in
/// a loop. Every write goes to its own cluster and is logged with a global sequence number
/// taken before it was sent and after it was acknowledged; qemu-nbd + nbdinfo then read every
/// checkpoint's bitmap from the images. Each write must fall in exactly one interval, that
/// interval must agree with real-time order, and across the two disks no write acknowledged
/// before another began may land in a later interval than it.
/// </summary>
public sealed class CheckpointAtomicityTests
{
    private const long Size = 256 << 20;
    private const int Cluster = 64 << 10;
    private const int Checkpoints = 12;
    private const int InFlight = 4;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed record Write(string Disk, int Cluster, long Sent, long Acked);

    private sealed record Instant(int Index, long Began, long Returned);

    [Fact]
    public async Task ConcurrentWritersOnTwoDisks_EveryWriteInExactlyOneInterval()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("a", Size, vda, vdb);
        await domain.StartAsync(Ct);
        var socket = domain.Running!.SocketPath;

        long clock = 0;
        var writes = new ConcurrentBag<Write>();
        using var stop = new CancellationTokenSource();
        var writers = new[] { "vda", "vdb" }.Select(disk => Task.Run(() => WriteClustersAsync(socket, disk, writes, () => Interlocked.Increment(ref clock), stop.Token), Ct)).ToList();

        var instants = new List<Instant>();
        var random = new Random(8);
        for (var i = 0; i < Checkpoints; i++)
        {
            await Task.Delay(random.Next(5, 40), Ct);
            var began = Interlocked.Increment(ref clock);
            await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>k{i}</name></domaincheckpoint>", cancellationToken: Ct);
            instants.Add(new Instant(i, began, Interlocked.Increment(ref clock)));
        }

        await stop.CancelAsync();
        await Task.WhenAll(writers);
        await domain.DestroyAsync(Ct);

        // Which checkpoints' bitmaps hold each write's cluster, read by QEMU.
        var dirty = new Dictionary<(string Disk, int Cluster), SortedSet<int>>();
        foreach (var disk in new[] { vda, vdb })
        {
            await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("a", disk));
            var names = Enumerable.Range(0, Checkpoints).Select(i => $"k{i}").ToArray();
            await using var export = await QemuNbdExport.StartAsync(test.ImagePath("a", disk), test.Directory.File($"{disk.Target}.q"), names);
            for (var i = 0; i < Checkpoints; i++)
            {
                foreach (var run in (await export.DirtyMapAsync($"k{i}")).Where(r => r.Dirty))
                {
                    for (var c = (int)(run.Offset / Cluster); c < run.End / Cluster; c++)
                    {
                        var key = (disk.Target, c);
                        if (!dirty.TryGetValue(key, out var set))
                        {
                            dirty[key] = set = [];
                        }

                        set.Add(i);
                    }
                }
            }
        }

        var log = writes.ToList();
        Assert.True(log.Count > 100, $"only {log.Count} writes were made");
        Assert.Equal(log.Count, dirty.Count(d => d.Value.Count > 0) + log.Count(w => !dirty.ContainsKey((w.Disk, w.Cluster))));

        // interval(w) = how many checkpoints took effect before w: bitmap k_j holds w exactly for j < interval(w).
        var interval = new Dictionary<Write, int>();
        foreach (var w in log)
        {
            var set = dirty.GetValueOrDefault((w.Disk, w.Cluster)) ?? [];
            var n = set.Count;
            Assert.True(set.SetEquals(Enumerable.Range(0, n)), $"{w.Disk} cluster {w.Cluster} is dirty in [{string.Join(',', set)}]: not one interval");
            interval[w] = n;
            foreach (var instant in instants)
            {
                if (instant.Returned < w.Sent)
                {
                    Assert.True(instant.Index < n, $"{w} was sent after k{instant.Index} was created but is not in its bitmap");
                }

                if (w.Acked < instant.Began)
                {
                    Assert.True(instant.Index >= n, $"{w} was acknowledged before k{instant.Index} was begun but is in its bitmap");
                }
            }
        }

        // One instant for both disks: real-time order is never inverted across them. For each
        // write, every write of the other disk acknowledged before it was sent must be in the
        // same or an earlier interval (a prefix maximum over acknowledgement order).
        foreach (var (from, to) in new[] { ("vda", "vdb"), ("vdb", "vda") })
        {
            var earlier = log.Where(w => w.Disk == from).OrderBy(w => w.Acked).ToList();
            var prefixMax = new int[earlier.Count];
            for (var i = 0; i < earlier.Count; i++)
            {
                prefixMax[i] = Math.Max(i > 0 ? prefixMax[i - 1] : 0, interval[earlier[i]]);
            }

            foreach (var later in log.Where(w => w.Disk == to))
            {
                var count = earlier.FindLastIndex(w => w.Acked < later.Sent) + 1;
                if (count > 0)
                {
                    Assert.True(prefixMax[count - 1] <= interval[later], $"a {from} write in interval {prefixMax[count - 1]} completed before {later} (interval {interval[later]}) began");
                }
            }
        }

        // Writes fell in many intervals: the test exercised the instants it judges.
        Assert.True(interval.Values.Distinct().Count() > Checkpoints / 2, $"writes fell in only {interval.Values.Distinct().Count()} intervals");
    }

    private static async Task WriteClustersAsync(string socket, string disk, ConcurrentBag<Write> log, Func<long> tick, CancellationToken stop)
    {
        await using var client = await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = disk }, Ct);
        var next = -1;
        var data = new byte[4096];
        var lanes = Enumerable.Range(0, InFlight).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                var cluster = Interlocked.Increment(ref next);
                if (cluster >= Size / Cluster)
                {
                    return;
                }

                var sent = tick();
                await client.WriteAsync((long)cluster * Cluster, data, cancellationToken: Ct);
                log.Add(new Write(disk, cluster, sent, tick()));

                // Paced so that the clusters last across all the checkpoints.
                await Task.Delay(1, Ct);
            }
        });
        await Task.WhenAll(lanes);
        await client.FlushAsync(Ct);
    }
}
