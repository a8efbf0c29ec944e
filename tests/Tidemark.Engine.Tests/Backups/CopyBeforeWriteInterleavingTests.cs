using Tidemark.Engine.Backups;
using Tidemark.Engine.Tests.Backups.Support;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Copy-before-write under random interleavings, in memory: guest writes of every size and
/// alignment race the push copier or the pull view's readers, with every image request
/// yielding halfway. Whatever the order: no job read of the live image overlaps a guest write
/// of the same bytes, every view read returns the disk at the instant, and a push store ends
/// up holding exactly the allocated clusters at the instant.
/// </summary>
public sealed class CopyBeforeWriteInterleavingTests
{
    private const int Cluster = 65536;
    private const int Size = 64 * Cluster;

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    public async Task RandomGuestWrites_AgainstCopierOrReaders_KeepTheInstant(int seed, bool pull)
    {
        var token = TestContext.Current.CancellationToken;
        var random = new Random(seed);
        var content = new byte[Size];
        var allocated = new bool[Size / Cluster];
        for (var c = 0; c < allocated.Length; c++)
        {
            allocated[c] = random.Next(3) != 0;
            if (allocated[c])
            {
                random.NextBytes(content.AsSpan(c * Cluster, Cluster));
            }
        }

        var live = new TracedMemoryImage(content, allocated, Cluster, seed);
        var instant = live.Snapshot();
        var store = new TracedMemoryImage(new byte[Size], new bool[allocated.Length], Cluster, seed + 100);
        var atInstant = await InstantClusters.AllocatedAsync(live, Cluster, token);
        var failures = new List<Exception>();
        var copyBeforeWrite = new CopyBeforeWrite("vda", live, new CopyAsideStore(store, Cluster, ZeroClusters.Skip), atInstant.Clone(), trackCopies: pull, OnCopyBeforeWriteError.FailJob, failures.Add);
        var view = new PointInTimeView(copyBeforeWrite, atInstant, Size);

        var guests = Enumerable.Range(0, 4).Select(g => Task.Run(async () =>
        {
            var r = new Random(seed * 10 + g);
            for (var i = 0; i < 60; i++)
            {
                var offset = r.Next(Size - 1);
                var length = Math.Min(Size - offset, 1 + r.Next(3 * Cluster));
                var data = new byte[length];
                r.NextBytes(data);
                await copyBeforeWrite.BeforeGuestWriteAsync(offset, length, token);
                await live.WriteAsync(offset, data, cancellationToken: token);
            }
        }));
        var jobs = pull
            ? Enumerable.Range(0, 3).Select(j => Task.Run(async () =>
            {
                var r = new Random(seed * 100 + j);
                for (var i = 0; i < 80; i++)
                {
                    var offset = r.Next(Size - 1);
                    var buffer = new byte[Math.Min(Size - offset, 1 + r.Next(4 * Cluster))];
                    await view.ReadAsync(offset, buffer, token);
                    Assert.True(buffer.AsSpan().SequenceEqual(instant.AsSpan(offset, buffer.Length)), $"view read at {offset}+{buffer.Length} differs from the instant");
                }
            }))
            : Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
            {
                var buffer = new byte[2 * Cluster];
                while (await copyBeforeWrite.CopyNextAsync(buffer, token) > 0)
                {
                    await Task.Yield();
                }
            }));

        await Task.WhenAll(guests.Concat(jobs)).WaitAsync(TimeSpan.FromMinutes(1), token);

        Assert.Empty(failures);
        Assert.Equal(0, live.Overlaps);
        if (pull)
        {
            var whole = new byte[Size];
            await view.ReadAsync(0, whole, token).AsTask().WaitAsync(TimeSpan.FromMinutes(1), token);
            Assert.True(whole.AsSpan().SequenceEqual(instant), "the whole view is the instant");
        }
        else
        {
            Assert.Equal(atInstant.CountDirtyBytes(), copyBeforeWrite.CopiedBytes);
            Assert.True(store.Snapshot().AsSpan().SequenceEqual(instant), "the push store is the instant");
        }

        await copyBeforeWrite.DetachAsync().WaitAsync(TimeSpan.FromMinutes(1), token);
        await Assert.ThrowsAsync<BackupJobException>(async () => await view.ReadAsync(0, new byte[1], token));
    }
}
