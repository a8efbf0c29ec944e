using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// A write cancelled while it runs (a backup job stopping its copies for a hand-over) leaves
/// the image consistent: once a write has taken its clusters it maps them, so qemu-img check
/// finds no leaked cluster, and every write that completed reads back.
/// </summary>
public sealed class CancelledWriteTests
{
    private const long Size = 64L << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(1 << 20)]
    [InlineData(64 << 10)]
    [InlineData(4 << 10)]
    public async Task WritesCancelledAtRandom_LeakNoCluster(int length)
    {
        using var dir = new TempDirectory("cw");
        var path = dir.File("t.qcow2");
        var random = new Random(20261204 + length);
        var written = new Dictionary<long, byte>();
        var cancelled = 0;
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = Size }, Ct))
        {
            for (var i = 0; i < 300; i++)
            {
                var offset = random.NextInt64(Size / length) * length;
                var pattern = (byte)random.Next(1, 256);
                var data = new byte[length];
                Array.Fill(data, pattern);
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);

                // Cancelled at once, or a little later, while the write is under way.
                var delay = random.Next(3);
                if (delay == 0)
                {
                    cts.Cancel();
                }
                else
                {
                    cts.CancelAfter(TimeSpan.FromTicks(random.Next(1, 2000)));
                }

                try
                {
                    await image.WriteAsync(offset, data, cancellationToken: cts.Token);
                    written[offset] = pattern;
                }
                catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
                {
                    // What a cancelled write leaves in its range is either old or new data.
                    written.Remove(offset);
                    cancelled++;
                }
            }

            await image.FlushAsync(Ct);
        }

        Assert.True(cancelled > 0, "no write was cancelled");
        var check = await Peer.RunAsync("qemu-img", ["check", path]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        foreach (var (offset, pattern) in written.Take(50))
        {
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-r", "-c", $"read -P {pattern} {offset} {length}", path);
        }
    }
}
