using FsCheck;
using FsCheck.Fluent;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Property: whatever bytes of the header, refcount table, refcount block, L1 and L2 tables and
/// bitmap directory are damaged, opening, reading, mapping and checking the image, and changing
/// its bitmaps read-write, either work or fail with a StorageException — never another
/// exception, a hang or an unbounded allocation — and a close after a failure never throws.
/// </summary>
public sealed class MutatedImageProperties : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private byte[] _pristine = [];

    public async ValueTask InitializeAsync()
    {
        // 4 KiB clusters keep every metadata structure inside the first 40 KiB: header 0, refcount
        // table 0x1000, block 0x2000, L1 0x3000, then L2 tables and data.
        var path = _dir.File("seed.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", path, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 8k", "-c", "write -z 1M 64k", "-c", "write -P 2 3M 4k", "-c", "write -z -u 2M 4k", path);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", path, "b0");
        _pristine = await File.ReadAllBytesAsync(path);
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }

    [Fact]
    public void MutatedMetadata_FailsOnlyWithStorageException()
    {
        var metadataEnd = Math.Min(_pristine.Length, 10 * 4096);
        var mutation = Gen.Choose(0, metadataEnd - 1).SelectMany(at => Gen.Choose(0, 255).Select(value => (at, (byte)value)));
        var arb = Gen.ListOf(mutation).Select(l => l.Take(8).ToArray()).ToArbitrary();
        var counter = 0;
        Prop.ForAll(arb, mutations =>
        {
            var bytes = (byte[])_pristine.Clone();
            foreach (var (at, value) in mutations)
            {
                bytes[at] = value;
            }

            var path = _dir.File($"m{Interlocked.Increment(ref counter)}.qcow2");
            File.WriteAllBytes(path, bytes);
            var task = Task.Run(() => ExerciseAsync(path));
            Assert.True(task.Wait(TimeSpan.FromSeconds(30)), "open/read/check of a damaged image did not finish");
            File.Delete(path);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    private static async Task ExerciseAsync(string path)
    {
        try
        {
            await ExerciseCoreAsync(path);
        }
        catch (Exception e) when (e is not StorageException)
        {
            throw new InvalidOperationException(e.ToString(), e);
        }
    }

    private static async Task ExerciseCoreAsync(string path)
    {
        try
        {
            await using var image = await Qcow2Image.OpenAsync(path, readOnly: true);
            var buffer = new byte[(int)Math.Min(image.VirtualSize, 4 << 20)];
            await image.ReadAsync(0, buffer);
            await image.GetExtentsAsync(0, image.VirtualSize);
        }
        catch (StorageException)
        {
        }

        try
        {
            await Qcow2Check.RunAsync(path);
        }
        catch (StorageException)
        {
        }

        await ChangeBitmapsAsync(path);
    }

    /// <summary>
    /// Read-write: add, clear and remove bitmaps, then close. The operations may fail with a
    /// StorageException; once one has broken the image, the close must neither throw nor write.
    /// </summary>
    private static async Task ChangeBitmapsAsync(string path)
    {
        Qcow2Image image;
        try
        {
            image = await Qcow2Image.OpenAsync(path, readOnly: false);
        }
        catch (StorageException)
        {
            return;
        }

        try
        {
            await image.Bitmaps.AddAsync("n1");
            await image.WriteAsync(0, new byte[4096]);
            await image.Bitmaps.ClearAsync("b0");
            await image.Bitmaps.RemoveAsync("b0");
        }
        catch (StorageException)
        {
        }

        if (image.IsBroken)
        {
            var before = await File.ReadAllBytesAsync(path);
            await image.DisposeAsync();
            Assert.Equal(before, await File.ReadAllBytesAsync(path));
            return;
        }

        try
        {
            await image.DisposeAsync();
        }
        catch (StorageException)
        {
        }
    }
}
