using System.Buffers;
using System.Runtime.ExceptionServices;

namespace Tidemark.Engine.Backups;

/// <summary>
/// The pull scratch written behind the guest: once copy-before-write has read a cluster's old
/// content into memory, the guest write may go on while the copy is written into the scratch.
/// Until that write completes, the copy is served from memory to the view's reads. Memory is
/// bounded: a guest write that would take more than <see cref="MaxBytes"/> in flight waits
/// for earlier writes to complete first.
/// </summary>
/// <remarks>
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
            if (_writing)
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

    /// <summary>Completes once every write started so far has completed (the scratch may then be closed).</summary>
    public Task DrainAsync()
    {
        lock (_lock)
        {
            return Task.WhenAll(_copies.Select(c => c.Written.Task));
        }
    }

    /// <summary>
    /// Writes the queued copies one after the other. The scratch takes one write at a time
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
            Copy copy;
            lock (_lock)
            {
                if (!_queue.TryDequeue(out copy!))
                {
                    _writing = false;
                    break;
                }
            }

            try
            {
                await WriteAsync(copy).ConfigureAwait(false);
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

    private async Task WriteAsync(Copy copy)
    {
        try
        {
            await _store.WriteAsync(copy.Offset, copy.Buffer.AsMemory(0, copy.Length), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The copy stays in memory until the failure is known, whatever the callback does:
            // a copy that never left would hold the drain and the memory bound for ever.
            try
            {
                _onFailure(e);
            }
            finally
            {
                Release(copy);
            }

            return;
        }

        Release(copy);
    }

    /// <summary>Takes a copy out of memory (written, or its failure reported) and wakes whoever waits for room or for the drain.</summary>
    private void Release(Copy copy)
    {
        TaskCompletionSource? room;
        lock (_lock)
        {
            _copies.Remove(copy);
            _bytes -= copy.Length;
            room = TakeRoomLocked();
        }

        ArrayPool<byte>.Shared.Return(copy.Buffer);
        room?.TrySetResult();
        copy.Written.TrySetResult();
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
