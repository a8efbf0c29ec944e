namespace Tidemark.Storage;

/// <summary>
/// A virtual disk seen as a flat range of bytes: what the guest, the NBD server and the backup
/// jobs read and write. Raw files, qcow2 images (with their backing chains) and the engine's
/// point-in-time views all implement it.
/// </summary>
/// <remarks>
/// Every call is asynchronous and takes a <see cref="CancellationToken"/>; there is no
/// synchronous twin. Offsets and lengths are in bytes and must lie within
/// <see cref="VirtualSize"/>; implementations check this at their public edge and throw
/// <see cref="ArgumentOutOfRangeException"/> naming the argument.
/// </remarks>
public interface IBlockImage : IAsyncDisposable
{
    /// <summary>The guest-visible size in bytes.</summary>
    long VirtualSize { get; }

    /// <summary>True when writes, zeroes and discards are refused.</summary>
    bool IsReadOnly { get; }

    /// <summary>
    /// The smallest unit in which allocation is tracked (the cluster size for qcow2, the file
    /// system block size for raw). Extents reported by <see cref="GetExtentsAsync"/> are
    /// aligned to it except at the end of the image.
    /// </summary>
    int AllocationGranularity { get; }

    /// <summary>Fills <paramref name="buffer"/> with the bytes at <paramref name="offset"/>.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>.</summary>
    /// <param name="flags"><see cref="WriteFlags.ForceUnitAccess"/> makes the data durable before the call returns.</param>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default);

    /// <summary>
    /// Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeroes,
    /// deallocating them when <see cref="WriteFlags.MayUnmap"/> is given and the format can.
    /// </summary>
    ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default);

    /// <summary>
    /// Tells the image that the range's content is no longer needed. The content afterwards is
    /// unspecified (it may read as the old data, zeroes or the backing file's data).
    /// </summary>
    ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>Makes every acknowledged write durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Describes the allocation of the range starting at <paramref name="offset"/>: a list of
    /// adjacent extents, the first starting at <paramref name="offset"/>, covering at least one
    /// byte and at most <paramref name="length"/> bytes (an implementation may stop early; the
    /// caller asks again from where the list ended).
    /// </summary>
    ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default);
}

/// <summary>Flags for writes, in the words of the NBD and QEMU block layers.</summary>
[Flags]
public enum WriteFlags
{
    None = 0,

    /// <summary>Force unit access: durable before completion (NBD_CMD_FLAG_FUA).</summary>
    ForceUnitAccess = 1,

    /// <summary>Zeroing may deallocate (the opposite of NBD_CMD_FLAG_NO_HOLE).</summary>
    MayUnmap = 2,

    /// <summary>Fail with <see cref="NotSupportedException"/> unless zeroing is fast (NBD_CMD_FLAG_FAST_ZERO).</summary>
    FastZero = 4,
}

/// <summary>What is known about a run of bytes (NBD <c>base:allocation</c> plus the chain depth).</summary>
[Flags]
public enum ExtentKind
{
    /// <summary>Allocated data.</summary>
    Data = 0,

    /// <summary>Not allocated in any layer that was consulted (NBD_STATE_HOLE).</summary>
    Hole = 1,

    /// <summary>Reads as zeroes (NBD_STATE_ZERO).</summary>
    Zero = 2,
}

/// <summary>
/// One run of bytes with the same allocation status.
/// </summary>
/// <param name="Offset">Guest offset in bytes.</param>
/// <param name="Length">Length in bytes (positive).</param>
/// <param name="Kind">Hole and zero flags, as NBD <c>base:allocation</c> reports them.</param>
/// <param name="Depth">
/// Which layer of the backing chain provides the bytes: 1 for the top image, 2 for its backing
/// file and so on; 0 when no layer allocates them (QEMU's <c>qemu:allocation-depth</c>).
/// </param>
public readonly record struct BlockExtent(long Offset, long Length, ExtentKind Kind, int Depth)
{
    public long End => Offset + Length;
}
