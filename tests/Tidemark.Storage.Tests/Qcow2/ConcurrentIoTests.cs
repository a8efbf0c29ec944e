using System.Buffers.Binary;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Reads and in-place writes move their data outside the image's metadata lock (Qcow2Image
/// remarks); these tests run many requests at once, on threads of their own, against a model
/// and against QEMU's view of the result.
/// </summary>
public sealed class ConcurrentIoTests
{
    private const long Size = 8L << 20;

    /// <summary>
    /// Workers each own every fourth 256 KiB stripe and run random writes, write-zeroes (with and
    /// without unmap), discards, reads and flushes there, each checking its reads against its own
    /// model; the stripes share L2 tables, refcount blocks and the allocator, so clusters freed by
    /// one worker are reused by another. At the end the image is clean for qemu-img check and
    /// reads as the model for qemu-img compare.
    /// </summary>
    [Theory]
    [InlineData(4096, false)]
    [InlineData(65536, false)]
    [InlineData(4096, true)]
    public async Task ManyWorkers_RandomOperations_MatchModelAndCheckClean(int clusterSize, bool withBacking)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var ct = TestContext.Current.CancellationToken;
        var model = new byte[Size];
        new Random(11).NextBytes(model);
        if (withBacking)
        {
            var basePath = dir.File("base.raw");
            await File.WriteAllBytesAsync(basePath, model, ct);
            await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", "-b", basePath, "-F", "raw", path);
        }

        await using (var image = withBacking
            ? await Qcow2Image.OpenAsync(path, readOnly: false, ct)
            : await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = clusterSize }, ct))
        {
            if (!withBacking)
            {
                await image.WriteAsync(0, model, WriteFlags.None, ct);
            }
            else
            {
                // Half the image allocated in the top, half read through from the backing file.
                for (var at = 0L; at < Size; at += 2 * Stripe)
                {
                    await image.WriteAsync(at, model.AsMemory((int)at, Stripe), WriteFlags.None, ct);
                }
            }

            const int Workers = 4;
            var tasks = Enumerable.Range(0, Workers).Select(w => Task.Run(() => RunWorkerAsync(image, model, w, Workers, clusterSize, ct), ct));
            await Task.WhenAll(tasks);
            ImageContent.AssertSame(model, await ImageContent.ReadAllAsync(image));
        }

        await ImageContent.AssertCleanAsync(path);
        var raw = dir.File("model.raw");
        await File.WriteAllBytesAsync(raw, model, ct);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", path, raw]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
    }

    private const int Stripe = 256 << 10;

    private static async Task RunWorkerAsync(Qcow2Image image, byte[] model, int worker, int workers, int clusterSize, CancellationToken ct)
    {
        var random = new Random(100 + worker);
        var stripes = (int)(Size / Stripe);
        for (var i = 0; i < 250; i++)
        {
            var stripe = (random.Next(stripes / workers) * workers) + worker;
            var start = ((long)stripe * Stripe) + (random.Next(Stripe / 512) * 512L);
            var length = Math.Min(random.Next(1, 160) * 512, ((long)(stripe + 1) * Stripe) - start);
            var range = model.AsMemory((int)start, (int)length);
            var op = random.Next(100);
            if (op < 40)
            {
                var data = new byte[length];
                random.NextBytes(data);
                await image.WriteAsync(start, data, WriteFlags.None, ct);
                data.CopyTo(range);
            }
            else if (op < 55)
            {
                await image.WriteZeroesAsync(start, length, random.Next(2) == 0 ? WriteFlags.None : WriteFlags.MayUnmap, ct);
                range.Span.Clear();
            }
            else if (op < 70)
            {
                // Discard may leave data or zeroes in the whole clusters it covers (over a backing
                // file an unallocated cluster keeps showing it), never anything else, and keeps
                // partial clusters as they were.
                await image.DiscardAsync(start, length, ct);
                var after = new byte[length];
                await image.ReadAsync(start, after, ct);
                for (var at = 0; at < length;)
                {
                    var clusterEnd = (int)(((start + at) / clusterSize * clusterSize) + clusterSize - start);
                    var n = Math.Min(clusterEnd, (int)length) - at;
                    var got = after.AsSpan(at, n);
                    var old = range.Span.Slice(at, n);
                    var whole = (start + at) % clusterSize == 0 && n == clusterSize;
                    Assert.True(got.SequenceEqual(old) || (whole && !got.ContainsAnyExcept((byte)0)), $"discard of {start}+{length}: bytes at {start + at}+{n} are neither the old data nor zeroes");
                    at += n;
                }

                after.CopyTo(range);
            }
            else if (op < 95)
            {
                var got = new byte[length];
                await image.ReadAsync(start, got, ct);
                Assert.True(got.AsSpan().SequenceEqual(range.Span), $"worker {worker}: read of {start}+{length} differs from the model");
            }
            else
            {
                await image.FlushAsync(ct);
            }
        }
    }

    /// <summary>
    /// Every 8-byte word of the guest disk is written with a value derived from its own guest
    /// offset, so any read must return, word by word, that value or zero. Writers rewrite
    /// clusters (allocating again where they were discarded), discarders and zeroers free
    /// clusters and flush so the frees take effect and the allocator hands them out again;
    /// readers check every word. A read that targeted a cluster freed under it and reused for
    /// another guest offset, or for metadata, would show a foreign word.
    /// </summary>
    [Theory]
    [InlineData(4096)]
    [InlineData(512)]
    public async Task DiscardRacingReads_NeverReturnAnotherOffsetsData(int clusterSize)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var ct = TestContext.Current.CancellationToken;
        const long TagSize = 4L << 20;
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = TagSize, ClusterSize = clusterSize }, ct))
        {
            await image.WriteAsync(0, Tagged(0, (int)TagSize), WriteFlags.None, ct);
            var clusters = (int)(TagSize / clusterSize);
            var readsWithData = 0L;
            var readsWithZeroes = 0L;

            async Task WriterAsync(int seed)
            {
                var random = new Random(seed);
                for (var i = 0; i < 300; i++)
                {
                    var first = random.Next(clusters);
                    var count = Math.Min(random.Next(1, 9), clusters - first);
                    var start = (long)first * clusterSize;
                    await image.WriteAsync(start, Tagged(start, count * clusterSize), WriteFlags.None, ct);
                }
            }

            async Task FreerAsync(int seed, bool zeroes)
            {
                var random = new Random(seed);
                for (var i = 0; i < 300; i++)
                {
                    var first = random.Next(clusters);
                    var count = Math.Min(random.Next(1, 9), clusters - first);
                    var start = (long)first * clusterSize;
                    if (zeroes)
                    {
                        await image.WriteZeroesAsync(start, (long)count * clusterSize, WriteFlags.MayUnmap, ct);
                    }
                    else
                    {
                        await image.DiscardAsync(start, (long)count * clusterSize, ct);
                    }

                    // The frees take effect at the flush; the next allocations may reuse them.
                    await image.FlushAsync(ct);
                }
            }

            async Task ReaderAsync(int seed)
            {
                var random = new Random(seed);
                for (var i = 0; i < 600; i++)
                {
                    var start = random.Next((int)(TagSize / 8)) * 8L;
                    var length = (int)Math.Min(random.Next(1, 8 * clusterSize / 8) * 8L, TagSize - start);
                    var got = new byte[length];
                    await image.ReadAsync(start, got, ct);
                    var (data, zero) = CheckTagged(got, start);
                    if (data)
                    {
                        Interlocked.Increment(ref readsWithData);
                    }

                    if (zero)
                    {
                        Interlocked.Increment(ref readsWithZeroes);
                    }
                }
            }

            await Task.WhenAll(
                Task.Run(() => WriterAsync(1), ct),
                Task.Run(() => WriterAsync(2), ct),
                Task.Run(() => FreerAsync(3, zeroes: false), ct),
                Task.Run(() => FreerAsync(4, zeroes: true), ct),
                Task.Run(() => ReaderAsync(5), ct),
                Task.Run(() => ReaderAsync(6), ct),
                Task.Run(() => ReaderAsync(7), ct));

            // The race was there to lose: readers saw both kept data and freed clusters.
            Assert.True(readsWithData > 0 && readsWithZeroes > 0, $"reads with data {readsWithData}, with zeroes {readsWithZeroes}");
            _ = CheckTagged(await ImageContent.ReadAllAsync(image), 0);
        }

        await ImageContent.AssertCleanAsync(path);
    }

    /// <summary>
    /// A read or an in-place write is held after it resolved guest cluster 5 and released the
    /// lock; meanwhile the cluster is discarded, the discard flushed, and a write to an
    /// unallocated guest cluster allocates (and so would reuse) cluster 5's host cluster. The held
    /// request must neither read guest cluster 100's data nor write into it: the free waits for it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task HeldRequest_ClusterFreedAndReused_TouchesOnlyItsOwnGuestData(bool write)
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.qcow2");
        var ct = TestContext.Current.CancellationToken;
        const int Cluster = 4096;
        await using var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = Cluster }, ct);
        await image.WriteAsync(0, Tagged(0, 16 * Cluster), WriteFlags.None, ct);
        await image.FlushAsync(ct);
        var freedHost = await image.GetHostOffsetAsync(5 * Cluster, ct);

        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        image.DataIoUnlocked = () =>
        {
            image.DataIoUnlocked = null;
            held.SetResult();
            return new ValueTask(release.Task);
        };
        var got = new byte[Cluster];
        var request = write
            ? Task.Run(async () => await image.WriteAsync(5 * Cluster, Tagged(5 * Cluster, Cluster), WriteFlags.None, ct), ct)
            : Task.Run(async () => await image.ReadAsync(5 * Cluster, got, ct), ct);
        await held.Task.WaitAsync(ct);

        var reuse = Task.Run(
            async () =>
            {
                await image.DiscardAsync(5 * Cluster, Cluster, ct);
                await image.FlushAsync(ct);
                await image.WriteAsync(100 * Cluster, Tagged(100 * Cluster, Cluster), WriteFlags.None, ct);
            },
            ct);

        // Give the reuse every chance to run ahead of the held request (it must not get past the
        // flush); the assertions below are on data only.
        _ = await Task.WhenAny(reuse, Task.Delay(500, ct));
        release.SetResult();
        await Task.WhenAll(request, reuse);

        Assert.Equal(freedHost, await image.GetHostOffsetAsync(100 * Cluster, ct));
        var other = new byte[Cluster];
        await image.ReadAsync(100 * Cluster, other, ct);
        _ = CheckTagged(other, 100 * Cluster);
        Assert.Equal(Tagged(100 * Cluster, Cluster), other);
        if (!write)
        {
            Assert.Equal(Tagged(5 * Cluster, Cluster), got);
        }
    }

    private static ulong Tag(long guestOffset) => (ulong)guestOffset ^ 0xA5C3_0000_0000_0001UL;

    private static byte[] Tagged(long start, int length)
    {
        var bytes = new byte[length];
        for (var at = 0; at < length; at += 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), Tag(start + at));
        }

        return bytes;
    }

    /// <summary>Asserts each word is its own tag or zero; says whether any word was data and any zero.</summary>
    private static (bool Data, bool Zero) CheckTagged(byte[] got, long start)
    {
        var (data, zero) = (false, false);
        for (var at = 0; at < got.Length; at += 8)
        {
            var word = BinaryPrimitives.ReadUInt64LittleEndian(got.AsSpan(at));
            if (word == 0)
            {
                zero = true;
                continue;
            }

            Assert.True(word == Tag(start + at), $"guest offset {start + at} read 0x{word:x16}, which is neither zero nor its own data (that of guest offset {(long)(word ^ Tag(0))})");
            data = true;
        }

        return (data, zero);
    }
}
