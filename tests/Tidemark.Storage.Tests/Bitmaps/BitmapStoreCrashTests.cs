using System.Text.Json;
using Tidemark.Storage.Bitmaps;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// The bitmap protocol stopped dead at every call it makes to the cluster space — while
/// marking IN_USE at open, while writing data, tables and directory, around the header switch
/// and while freeing — as a crash would stop it. Whatever the stopping point, QEMU finds no
/// corruption (leaks are allowed) and every bitmap it still trusts holds exactly the bits of
/// a clean state: the old one, or the new one. None is ever consistent and incomplete, and none
/// is ever dropped.
/// </summary>
public sealed class BitmapStoreCrashTests
{
    private const long Size = 256L << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StoppedAtAnyCall_LeavesOldStateNewStateOrInconsistent()
    {
        using var dir = new TempDirectory();
        var calls = await CountCallsAsync(dir);
        Assert.InRange(calls, 10, 400);
        var outcomes = new HashSet<string>();
        for (var stopAt = 0; stopAt <= calls; stopAt++)
        {
            outcomes.Add(await RunStoppedAtAsync(dir.File($"stop{stopAt}.qcow2"), stopAt));
        }

        // The stopping points reach every kind of outcome, so none of the checks above was vacuous.
        Assert.Superset(new HashSet<string> { "old", "in-use", "new" }, outcomes);
    }

    // One full run without stopping: how many calls the protocol makes.
    private static async Task<int> CountCallsAsync(TempDirectory dir)
    {
        var path = dir.File("count.qcow2");
        await PrepareAsync(path);
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: false, Ct);
        await StoreOldStateAsync(image);
        var space = new StoppingClusterSpace(image, int.MaxValue);
        await UpdateAsync(space);
        return space.Calls;
    }

    private static async Task<string> RunStoppedAtAsync(string path, int stopAt)
    {
        await PrepareAsync(path);
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, Ct))
        {
            await StoreOldStateAsync(image);
            var space = new StoppingClusterSpace(image, stopAt);
            try
            {
                await UpdateAsync(space);
            }
            catch (IOException e) when (e.Message == StoppingClusterSpace.Stopped)
            {
            }
            catch (StorageException)
            {
                // A rollback path that ran into the stopped space.
            }
        }

        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", path]);
        Assert.True(check.ExitCode is 0 or 3, $"stop at {stopAt}: qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
        var json = JsonDocument.Parse(check.Stdout).RootElement;
        Assert.False(json.TryGetProperty("corruptions", out _), $"stop at {stopAt}: {check.Stdout}");

        var set = await Qcow2BitmapSet.LoadAsync(ReadOnlyClusterSpace.Open(path), Ct);
        var names = set.Bitmaps.Select(b => b.Name).ToList();
        // Marking IN_USE at open switches to a new directory with autoclear bit 0 kept set, so
        // no stopping point leaves the extension ignored: b0 is always still listed.
        Assert.True(names.Count > 0, $"stop at {stopAt}: every bitmap dropped");
        var b0 = set.Get("b0");
        if (b0.Inconsistent)
        {
            Assert.Equal(["b0"], names);
            return "in-use";
        }

        var old = OldBits();
        if (names.SequenceEqual(["b0"]))
        {
            Assert.Equal(old.Runs(), b0.Bitmap.Runs());
            return "old";
        }

        Assert.Equal(["b0", "b1"], names);
        old.Merge(NewBits());
        Assert.Equal(old.Runs(), b0.Bitmap.Runs());
        Assert.Equal(NewBits().Runs(), set.Get("b1").Bitmap.Runs());
        Assert.False(set.Get("b1").Enabled);
        return "new";
    }

    // The image opens with no bitmaps, so its own bitmap set stays empty and stores nothing at
    // close; the sets below are the only ones that touch the bitmap metadata.
    private static async Task PrepareAsync(string path)
    {
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write 0 8k", "-c", "write 100M 1M", "-c", "write -z 200M 64k", path);
    }

    // The old state: b0, enabled, stored cleanly with the old bits.
    private static async Task StoreOldStateAsync(IQcow2ClusterSpace image)
    {
        var set = await Qcow2BitmapSet.LoadAsync(image, Ct);
        var b0 = await set.AddAsync("b0", 4096, cancellationToken: Ct);
        b0.Bitmap.Merge(OldBits());
        await set.StoreAsync(Ct);
    }

    private static DirtyBitmap OldBits()
    {
        var bits = new DirtyBitmap(Size, 4096);
        bits.SetRange(0, 8192);
        bits.SetRange(100 << 20, 1 << 20);
        bits.SetRange(200 << 20, 65536);
        return bits;
    }

    private static DirtyBitmap NewBits()
    {
        var bits = new DirtyBitmap(Size, 4096);
        bits.SetRange(50 << 20, 3 << 20);
        bits.SetRange(Size - 4096, 4096);
        return bits;
    }

    // What an open/record/close cycle does to the bitmaps: load (marking IN_USE), record new
    // writes into b0, add a disabled b1, store at close.
    private static async Task UpdateAsync(IQcow2ClusterSpace space)
    {
        var set = await Qcow2BitmapSet.LoadAsync(space, Ct);
        var b1 = await set.AddAsync("b1", 4096, enabled: false, cancellationToken: Ct);
        b1.Bitmap.Merge(NewBits());
        foreach (var extent in NewBits().EnumerateDirtyExtents(0, Size))
        {
            set.MarkDirty(extent.Offset, extent.Length);
        }

        await set.StoreAsync(Ct);
    }

    /// <summary>The image's cluster space, dead from the <c>stopAt</c>-th call on, as after a crash.</summary>
    private sealed class StoppingClusterSpace(IQcow2ClusterSpace inner, int stopAt) : IQcow2ClusterSpace
    {
        public const string Stopped = "stopped here, as by a crash";

        public int Calls { get; private set; }

        public int ClusterSize => inner.ClusterSize;

        public long VirtualSize => inner.VirtualSize;

        public bool IsReadOnly => inner.IsReadOnly;

        public bool CanStoreBitmaps => inner.CanStoreBitmaps;

        public ReadOnlyMemory<byte>? BitmapsExtension => inner.BitmapsExtension;

        public async ValueTask<long> AllocateClustersAsync(int count, CancellationToken cancellationToken)
        {
            Step();
            return await inner.AllocateClustersAsync(count, cancellationToken);
        }

        public async ValueTask FreeClustersAsync(long hostOffset, int count, CancellationToken cancellationToken)
        {
            Step();
            await inner.FreeClustersAsync(hostOffset, count, cancellationToken);
        }

        public async ValueTask ReadMetadataAsync(long hostOffset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            Step();
            await inner.ReadMetadataAsync(hostOffset, buffer, cancellationToken);
        }

        public async ValueTask WriteMetadataAsync(long hostOffset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            Step();
            await inner.WriteMetadataAsync(hostOffset, data, cancellationToken);
        }

        public async ValueTask FlushAsync(CancellationToken cancellationToken)
        {
            Step();
            await inner.FlushAsync(cancellationToken);
        }

        public async ValueTask WriteBitmapsExtensionAsync(ReadOnlyMemory<byte>? extension, bool bitmapsConsistent, CancellationToken cancellationToken)
        {
            Step();
            await inner.WriteBitmapsExtensionAsync(extension, bitmapsConsistent, cancellationToken);
        }

        private void Step()
        {
            if (Calls++ >= stopAt)
            {
                throw new IOException(Stopped);
            }
        }
    }
}
