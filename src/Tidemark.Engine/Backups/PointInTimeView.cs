using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// A pull backup's disk as it was at the job's instant, read-only: what the NBD export serves
/// (QEMU's fleecing node, spec §6.9). Reads go through <see cref="CopyBeforeWrite"/> (scratch
/// where a guest write copied the old content aside, the live image elsewhere); allocation is
/// the live image's at the instant (data, allocated zeroes, holes), kept at the copy granularity.
/// </summary>
/// <remarks>The job owns the live image and the scratch: disposing the view disposes neither.</remarks>
internal sealed class PointInTimeView : IBlockImage
{
    /// <summary>Extents per block-status answer: the NBD server asks again from where a list ends.</summary>
    private const int MaxExtents = 1024;

    private readonly CopyBeforeWrite _copyBeforeWrite;
    private readonly DirtyBitmap _allocated;
    private readonly DirtyBitmap? _zeroData;

    /// <param name="allocated">Clusters holding data at the instant (never changed afterwards).</param>
    /// <param name="zeroData">Clusters allocated at the instant that read as zeroes (<see cref="InstantClusters.AllocatedAsync"/>); the rest, holes.</param>
    public PointInTimeView(CopyBeforeWrite copyBeforeWrite, DirtyBitmap allocated, long virtualSize, DirtyBitmap? zeroData = null)
    {
        _copyBeforeWrite = copyBeforeWrite;
        _allocated = allocated;
        _zeroData = zeroData;
        VirtualSize = virtualSize;
    }

    public long VirtualSize { get; }

    public bool IsReadOnly => true;

    public int AllocationGranularity => (int)_allocated.Granularity;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return _copyBeforeWrite.ReadPointInTimeAsync(offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => throw ReadOnly();

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => throw ReadOnly();

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
        => throw ReadOnly();

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        cancellationToken.ThrowIfCancellationRequested();
        var extents = new List<BlockExtent>();
        var end = Math.Min(VirtualSize, offset + Math.Max(1, length));
        for (var position = offset; position < end && extents.Count < MaxExtents;)
        {
            // QEMU's export of the fleecing node says what the live image said at the instant:
            // data, zeroes in an allocated cluster (2), or a hole (3).
            var run = _allocated.GetExtent(position, end - position);
            if (run.Dirty)
            {
                extents.Add(new BlockExtent(position, run.Length, ExtentKind.Data, 1));
            }
            else
            {
                // Without the zero-data bitmap, the whole run is a hole.
                run = _zeroData?.GetExtent(position, run.Length) ?? run;
                extents.Add(run.Dirty
                    ? new BlockExtent(position, run.Length, ExtentKind.Zero, 1)
                    : new BlockExtent(position, run.Length, ExtentKind.Hole | ExtentKind.Zero, 0));
            }

            position = run.End;
        }

        return ValueTask.FromResult<IReadOnlyList<BlockExtent>>(extents);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private void CheckRange(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset + length, VirtualSize, nameof(length));
    }

    private StorageException ReadOnly() => new(StorageErrorReason.ReadOnly, $"the point-in-time view of disk '{_copyBeforeWrite.Disk}' is read-only");
}
