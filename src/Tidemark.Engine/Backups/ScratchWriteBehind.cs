using System.Buffers;
using System.Runtime.ExceptionServices;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Backups;

/// <summary>
/// The pull scratch written behind the guest: once copy-before-write has read a cluster's old
/// content into memory, the guest write may go on while the copy is written into the scratch.
/// Until that write completes, the copy is served from memory to the view's reads. Memory is
/// bounded: a guest write that would take more than <see cref="MaxBytes"/> in flight waits
/// for earlier writes to complete first.
/// </summary>
/// <remarks>
/// <para>Copies are written in batches of at least <see cref="BatchBytes"/> (all at the end,
/// <see cref="DrainAsync"/>), each with one gathered write into the scratch
/// (<see cref="CopyAsideStore.WriteGatheredAsync"/>): a random small-write load copies 4 KiB
/// pieces from all over the disk, and one write each, into a fresh cluster each, cost more
/// than the guest's own write (a new page and a new extent of the file every time, and a
/// thread hand-off); gathered, they are one sequential write into the file, and the writer is
/// woken once per batch.</para>
/// <para>Only for the fail-the-job policy: a guest write that has gone on cannot fail when
/// its copy's write does later. A failed write calls the failure callback before the copy
/// leaves memory, so a view read that then finds neither the copy nor the data in the scratch
/// sees the job failed when it checks at its end (<see cref="CopyBeforeWrite"/>).</para>
/// <para>The caller registers a copy (<see cref="Start"/>) before it marks its clusters as
/// copied, and each copy leaves memory only once it is in the scratch; so a view read of a
/// cluster marked copied finds it either here or in the scratch. Two copies of the same
/// clusters may be in flight (a guest write cancelled after registering part of its claim gives
/// the clusters back, and they are copied again): both hold the same old content.</para>
/// <para>Locking: <see cref="_lock"/> guards <see cref="_copies"/>, <see cref="_bytes"/> and
/// <see cref="_room"/>; nothing waits or does I/O while holding it (copying a buffer to a view
/// read's buffer is done under it, so that the buffer is not returned to the pool meanwhile).</para>
/// </remarks>
internal sealed class ScratchWriteBehind
{
    /// <summary>Bytes of old content in memory at most, per disk: a few hundred 64 KiB clusters.</summary>
    public const long MaxBytes = 16 << 20;

    /// <summary>Bytes of queued copies that wake the writer: one gathered write's worth.</summary>
    public const long BatchBytes = 256 << 10;

    /// <summary>Most bytes one gathered write takes from the queue.</summary>
    private const long MaxBatchBytes = 1 << 20;

    private readonly Lock _lock = new();
    private readonly CopyAsideStore _store;
    private readonly Action<Exception> _onFailure;

    /// <summary>Copies whose scratch write has not completed. Guarded by <see cref="_lock"/>.</summary>
    private readonly List<Copy> _copies = [];

    /// <summary>Copies not yet handed to the scratch, oldest first. Guarded by <see cref="_lock"/>.</summary>
    private readonly Queue<Copy> _queue = new();

    /// <summary>Whether the writer loop runs. Guarded by <see cref="_lock"/>.</summary>
    private bool _writing;

    /// <summary>Bytes reserved or in flight. Guarded by <see cref="_lock"/>.</summary>
    private long _bytes;

    /// <summary>Bytes of the copies in <see cref="_queue"/>. Guarded by <see cref="_lock"/>.</summary>
    private long _queuedBytes;

    /// <summary>Set by <see cref="DrainAsync"/>: the writer writes what is queued, however little. Guarded by <see cref="_lock"/>.</summary>
    private bool _draining;

    /// <summary>Completed when a write completes, for those waiting for room. Guarded by <see cref="_lock"/>.</summary>
    private TaskCompletionSource? _room;

    /// <param name="onFailure">Called with the error of the first write that fails, before its copy leaves memory.</param>
    public ScratchWriteBehind(CopyAsideStore store, Action<Exception> onFailure)
    {
        _store = store;
        _onFailure = onFailure;
    }

    /// <summary>Bytes whose scratch write is still in flight.</summary>
    public long BytesInFlight
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    /// <summary>Waits until <paramref name="length"/> more bytes fit in memory (always, when nothing is in flight), and reserves them.</summary>
    public async ValueTask ReserveAsync(int length, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_bytes == 0 || _bytes + length <= MaxBytes)
                {
                    _bytes += length;
                    return;
                }

                _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _room.Task;
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Gives back a reservation that will not be started (the read of the old content failed).</summary>
    public void Unreserve(int length)
    {
        TaskCompletionSource? room;
        lock (_lock)
        {
            _bytes -= length;
            room = TakeRoomLocked();
        }

        room?.TrySetResult();
    }

    /// <summary>
    /// Serves the copy of [<paramref name="offset"/>, + <paramref name="length"/>) held in
    /// <paramref name="buffer"/> (rented from <see cref="ArrayPool{T}.Shared"/>, returned here
    /// once written) from memory, and writes it into the scratch in the background. The bytes
    /// were reserved with <see cref="ReserveAsync"/>.
    /// </summary>
    public void Start(long offset, byte[] buffer, int length)
    {
        var copy = new Copy(offset, buffer, length);
        lock (_lock)
        {
            _copies.Add(copy);
            _queue.Enqueue(copy);
            _queuedBytes += length;
            if (_writing || (_queuedBytes < BatchBytes && !_draining))
            {
                return;
            }

            _writing = true;
        }

        // The guest write goes on from here; the scratch is written on the thread pool.
        _ = Task.Run(WriteQueueAsync);
    }

    /// <summary>
    /// Reads the clusters' copies, from memory where their scratch write is in flight, from the
    /// scratch elsewhere. Only for clusters already marked copied (see the remarks).
    /// </summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var position = offset;
        var end = offset + buffer.Length;
        while (position < end)
        {
            var stop = end;
            var served = false;
            lock (_lock)
            {
                foreach (var copy in _copies)
                {
                    if (copy.Offset <= position && position < copy.End)
                    {
                        stop = Math.Min(end, copy.End);
                        copy.Buffer.AsSpan((int)(position - copy.Offset), (int)(stop - position)).CopyTo(buffer.Span[(int)(position - offset)..]);
                        served = true;
                        break;
                    }

                    if (copy.Offset > position && copy.Offset < stop)
                    {
                        stop = copy.Offset;
                    }
                }
            }

            if (!served)
            {
                await _store.Image.ReadAsync(position, buffer[(int)(position - offset)..(int)(stop - offset)], cancellationToken).ConfigureAwait(false);
            }

            position = stop;
        }
    }

    /// <summary>Writes what is queued, however little, and completes once every copy started so far is in the scratch (which may then be closed).</summary>
    public Task DrainAsync()
    {
        Task drained;
        var start = false;
        lock (_lock)
        {
            drained = Task.WhenAll(_copies.Select(c => c.Written.Task));
            _draining = true;
            if (!_writing && _queue.Count > 0)
            {
                _writing = start = true;
            }
        }

        if (start)
        {
            _ = Task.Run(WriteQueueAsync);
        }

        return drained;
    }

    /// <summary>
    /// Writes the queued copies, a batch at a time. The scratch takes one write at a time
    /// anyway (its metadata lock), and one writer continuing from each completed write to the
    /// next costs fewer thread hand-offs than many writers queued on that lock.
    /// </summary>
    private async Task WriteQueueAsync()
    {
        // Only a failure callback that throws makes WriteAsync throw; the copies queued behind
        // still have to be written and leave memory (the drain and the memory bound wait for
        // them), so the loop goes on and the task faults with that error at the end.
        Exception? callbackError = null;
        while (true)
        {
            var batch = new List<Copy>();
            lock (_lock)
            {
                // Less than a batch waits in memory for more copies, or for the drain.
                if (_queue.Count == 0 || (_queuedBytes < BatchBytes && !_draining))
                {
                    _writing = false;
                    break;
                }

                var bytes = 0L;
                while (bytes < MaxBatchBytes && _queue.TryDequeue(out var copy))
                {
                    batch.Add(copy);
                    bytes += copy.Length;
                }

                _queuedBytes -= bytes;
            }

            try
            {
                await WriteAsync(batch).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                callbackError ??= e;
            }
        }

        if (callbackError is not null)
        {
            ExceptionDispatchInfo.Throw(callbackError);
        }
    }

    private async Task WriteAsync(List<Copy> batch)
    {
        try
        {
            await _store.WriteGatheredAsync(batch.ConvertAll(c => new GuestData(c.Offset, c.Buffer.AsMemory(0, c.Length))), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The copies stay in memory until the failure is known, whatever the callback does:
            // a copy that never left would hold the drain and the memory bound for ever.
            try
            {
                _onFailure(e);
            }
            finally
            {
                Release(batch);
            }

            return;
        }

        Release(batch);
    }

    /// <summary>Takes a batch out of memory (written, or its failure reported) and wakes whoever waits for room or for the drain.</summary>
    private void Release(List<Copy> batch)
    {
        TaskCompletionSource? room;
        lock (_lock)
        {
            // The queue hands out copies in the order they were registered, and one writer
            // releases its batches in the order it took them: the batch leads the list.
            _copies.RemoveRange(0, batch.Count);
            foreach (var copy in batch)
            {
                _bytes -= copy.Length;
            }

            room = TakeRoomLocked();
        }

        room?.TrySetResult();
        foreach (var copy in batch)
        {
            ArrayPool<byte>.Shared.Return(copy.Buffer);
            copy.Written.TrySetResult();
        }
    }

    private TaskCompletionSource? TakeRoomLocked()
    {
        var room = _room;
        _room = null;
        return room;
    }

    private sealed class Copy(long offset, byte[] buffer, int length)
    {
        public long Offset => offset;

        public long End => offset + length;

        public byte[] Buffer => buffer;

        public int Length => length;

        /// <summary>Completed once the copy is in the scratch (or its write failed) and out of memory.</summary>
        public TaskCompletionSource Written { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
