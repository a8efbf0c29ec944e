using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Allocating writes write their data on the calling thread while they hold the metadata lock
/// (<see cref="HostFile.WriteOnCallingThreadAsync"/>): what a pull backup's scratch takes, one
/// 64 KiB cluster after another at scattered guest offsets, with no flush until close.
/// </summary>
public sealed class AllocatingWriteTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ScatteredAllocatingWrites_CompleteWithoutWaiting_AndQemuReadsThemBack()
    {
        using var dir = new TempDirectory();
        var path = dir.File("scratch.qcow2");
        const int Cluster = 64 << 10;
        const long Size = 32L << 20;
        var reference = new byte[Size];
        var clusters = Enumerable.Range(0, (int)(Size / Cluster)).ToArray();
        new Random(3).Shuffle(clusters);
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size, ClusterSize = Cluster }, Ct))
        {
            image.CacheMode = CacheMode.Unsafe;
            for (var i = 0; i < clusters.Length; i++)
            {
                // Whole clusters, and every fourth a 4 KiB write into a fresh cluster (the rest reads as zeroes).
                var offset = (long)clusters[i] * Cluster;
                var length = i % 4 == 3 ? 4096 : Cluster;
                var data = new byte[length];
                Array.Fill(data, (byte)((i % 255) + 1));
                data.CopyTo(reference.AsSpan((int)offset));

                var pending = image.WriteAsync(offset, data, cancellationToken: Ct);

                // Once the first write has read the refcount block in, nothing else waits: no
                // pool thread carries the data write, so the write is over when the call returns.
                Assert.True(i == 0 || pending.IsCompletedSuccessfully, $"allocating write {i} at {offset} had not completed when WriteAsync returned");
                await pending;
            }
        }

        var check = await ImageContent.AssertCleanAsync(path);
        Assert.Equal(clusters.Length, check.GetProperty("allocated-clusters").GetInt32());
        ImageContent.AssertSame(reference, await ImageContent.QemuReadAllAsync(path, dir));
    }

    [Fact]
    public async Task WriteOnCallingThread_WritesCountsAndRefuses()
    {
        using var dir = new TempDirectory();
        var path = dir.File("f");
        var data = new byte[8192];
        Array.Fill(data, (byte)0x7e);
        await using (var file = HostFile.Create(path))
        {
            var pending = file.WriteOnCallingThreadAsync(4096, data, Ct);
            Assert.True(pending.IsCompletedSuccessfully);
            Assert.Equal(4096 + data.Length, file.Length);

            using var cancelled = new CancellationTokenSource();
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await file.WriteOnCallingThreadAsync(0, data, cancelled.Token));

            // An I/O error comes back in the task, as from the asynchronous write.
            var failed = file.WriteOnCallingThreadAsync(-1, data, Ct);
            Assert.True(failed.IsFaulted);
            await Assert.ThrowsAnyAsync<ArgumentException>(async () => await failed);
        }

        var bytes = await File.ReadAllBytesAsync(path, Ct);
        Assert.Equal(new byte[4096], bytes[..4096]);
        Assert.Equal(data, bytes[4096..]);
        await using var readOnly = HostFile.Open(path, readOnly: true);
        var refused = await Assert.ThrowsAsync<StorageException>(async () => await readOnly.WriteOnCallingThreadAsync(0, data, Ct));
        Assert.Equal(StorageErrorReason.ReadOnly, refused.Reason);
    }
}
