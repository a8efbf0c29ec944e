using System.Buffers;
using Tidemark.Engine.Disks;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Backups;

/// <summary>
/// Copy-before-write for one disk of a running backup job (design.md, "The instant"; QEMU's
/// block/copy-before-write.c over block/block-copy.c). The job owns a set of clusters whose
/// point-in-time content is still only in the live image; a guest write touching one first
/// copies its old content into the store (push: the target, pull: the scratch), then goes on.
/// The push copier (<see cref="CopyNextAsync"/>) and the pull view
/// (<see cref="ReadPointInTimeAsync"/>) take clusters from the same set.
/// </summary>
/// <remarks>
/// <para>The contract, as block/copy-before-write.c writes its own:</para>
/// <list type="bullet">
/// <item>When <see cref="BeforeGuestWriteAsync"/> returns, the point-in-time content of every
/// cluster the range touches that the job still needed is in the store, and no view read of
/// those clusters from the live image is in flight; none will start afterwards (a read of a
/// copied cluster goes to the store).</item>
/// <item>Per cluster, one party copies (a guest write or the push copier, whoever claims it
/// first); everyone else touching the cluster waits for that copy. A view read that reaches
/// the live image first holds a lease that the copying guest write waits for.</item>
/// <item>If the copy fails under <see cref="OnCopyBeforeWriteError.FailGuestWrite"/>, the call
/// throws, and the guest request must fail too: the clusters go back to the job, their old
/// content still in the live image. Under <see cref="OnCopyBeforeWriteError.FailJob"/> the
/// job fails (every later view read and copy fails) and the guest write goes on.</item>
/// <item>After <see cref="DetachAsync"/> (the job ended) every call returns at once.</item>
/// </list>
/// <para>A pull under <see cref="OnCopyBeforeWriteError.FailJob"/> writes its copies into the
/// scratch behind the guest (<see cref="ScratchWriteBehind"/>): "in the store" then means read into memory,
/// where the view reads it until its scratch write completes. The guest write no longer waits
/// for the scratch, which is private to the job and needs no ordering against the guest's
/// writes: what the view must return is already fixed in memory. A failed scratch write fails
/// the job as a failed copy does. Under <see cref="OnCopyBeforeWriteError.FailGuestWrite"/>
/// the copy is written before the guest write goes on, since the guest write must fail if the
/// copy does.</para>
/// <para>Locking: <see cref="_lock"/> guards <see cref="_pending"/>, <see cref="_copied"/>,
/// <see cref="_claims"/>, <see cref="_leases"/>, <see cref="_failure"/> and writes of
/// <see cref="_outstanding"/> and <see cref="_quiet"/>; those two are also read without it
/// for the fast path. Nothing waits or does I/O while holding it. Clusters outside the set
/// cost a guest write two volatile reads once the set is empty, and one short lock
/// otherwise.</para>
/// </remarks>
internal sealed class CopyBeforeWrite : IGuestWriteInterceptor
{
    /// <summary>Bytes per store write: large enough for sequential speed, small enough for 8 in flight per disk.</summary>
    public const int MaxCopyBytes = 1 << 20;

    private readonly Lock _lock = new();
    private readonly IBlockImage _live;
    private readonly CopyAsideStore _store;
    private readonly OnCopyBeforeWriteError _policy;
    private readonly Action<Exception> _onJobFailure;

    /// <summary>Pull under <see cref="OnCopyBeforeWriteError.FailJob"/>: copies read into memory and written into the scratch in the background.</summary>
    private readonly ScratchWriteBehind? _writeBehind;

    /// <summary>Clusters the job still needs whose content is only in the live image and which no one is copying. Guarded by <see cref="_lock"/>.</summary>
    private readonly DirtyBitmap _pending;

    /// <summary>Pull: clusters whose point-in-time content is in the scratch. Guarded by <see cref="_lock"/>.</summary>
    private readonly DirtyBitmap? _copied;

    /// <summary>Clusters being copied (taken out of <see cref="_pending"/>, not yet in the store). Guarded by <see cref="_lock"/>.</summary>
    private readonly List<ClusterRun> _claims = [];

    /// <summary>View reads of pending clusters from the live image. Guarded by <see cref="_lock"/>.</summary>
    private readonly List<ClusterRun> _leases = [];

    /// <summary>The first copy failure under <see cref="OnCopyBeforeWriteError.FailJob"/>. Guarded by <see cref="_lock"/>.</summary>
    private Exception? _failure;

    /// <summary>Pending clusters plus claims: zero means a guest write has nothing to wait for.</summary>
    private long _outstanding;

    /// <summary>1 once the job has failed or ended: guest writes pass untouched.</summary>
    private int _quiet;

    /// <summary>Where the push copier looks for the next pending cluster. Guarded by <see cref="_lock"/>.</summary>
    private long _cursor;

    private long _copiedBytes;

    /// <param name="disk">The disk's target dev, for messages.</param>
    /// <param name="live">The running disk's image.</param>
    /// <param name="store">The target (push) or the scratch (pull).</param>
    /// <param name="pending">The job's clusters at the instant; owned (and changed) from now on.</param>
    /// <param name="trackCopies">Pull: remember which clusters are in the scratch, for the view.</param>
    /// <param name="onJobFailure">Called once when a copy failure fails the job.</param>
    /// <param name="carried">A job a previous host handed over (<see cref="HandOverAsync"/>): where its copying had got to; <paramref name="pending"/> is then its <see cref="CopyProgress.Pending"/>.</param>
    public CopyBeforeWrite(string disk, IBlockImage live, CopyAsideStore store, DirtyBitmap pending, bool trackCopies, OnCopyBeforeWriteError policy, Action<Exception> onJobFailure, CopyProgress? carried = null)
    {
        Disk = disk;
        _live = live;
        _store = store;
        _pending = pending;
        _copied = trackCopies ? carried?.Copied ?? new DirtyBitmap(pending.Size, pending.Granularity) : null;
        _policy = policy;
        _onJobFailure = onJobFailure;
        _writeBehind = trackCopies && policy == OnCopyBeforeWriteError.FailJob ? new ScratchWriteBehind(store, e => HandleCopyFailure(null, e)) : null;
        _outstanding = pending.DirtyBitCount;
        Cluster = pending.Granularity;
        InitialBytes = carried?.InitialBytes ?? pending.CountDirtyBytes();
        _copiedBytes = carried?.CopiedBytes ?? 0;
    }

    /// <summary>The disk's target dev.</summary>
    public string Disk { get; }

    /// <summary>The copy granularity: the unit of <see cref="_pending"/>.</summary>
    public long Cluster { get; }

    /// <summary>Bytes the job needed at the instant.</summary>
    public long InitialBytes { get; }

    /// <summary>Bytes in the store so far, copied by guest writes or the push copier.</summary>
    public long CopiedBytes => Interlocked.Read(ref _copiedBytes);

    /// <summary>Bytes of copies read into memory whose scratch write has not completed yet.</summary>
    public long BytesInMemory => _writeBehind?.BytesInFlight ?? 0;

    /// <summary>The failure that broke the job's point in time, if any.</summary>
    public Exception? Failure
    {
        get
        {
            lock (_lock)
            {
                return _failure;
            }
        }
    }

    public async ValueTask BeforeGuestWriteAsync(long offset, long length, CancellationToken cancellationToken)
    {
        if (length <= 0 || Volatile.Read(ref _outstanding) == 0 || Volatile.Read(ref _quiet) != 0)
        {
            return;
        }

        var start = offset / Cluster * Cluster;
        var end = Math.Min(_pending.Size, (offset + length + Cluster - 1) / Cluster * Cluster);
        List<Task>? waits = null;
        while (true)
        {
            // One pass: claim what is still pending in the range and copy it, then wait for the
            // copies others hold in the range. Those end copied, or pending again if their copy
            // failed a guest write or was cancelled, hence the next pass. Claims are never held
            // while waiting for another claim (two writes could then wait for each other); only
            // while waiting for the view reads of the claimed clusters, which wait for nothing.
            List<ClusterRun>? mine = null;
            waits?.Clear();
            lock (_lock)
            {
                if (_quiet != 0)
                {
                    return;
                }

                ClaimLocked(start, end, long.MaxValue, ref mine);
                foreach (var claim in _claims)
                {
                    if (claim.Intersects(start, end) && (mine is null || !mine.Contains(claim)))
                    {
                        (waits ??= []).Add(claim.Done.Task);
                    }
                }
            }

            if (mine is not null)
            {
                await CopyClaimsAsync(mine, cancellationToken).ConfigureAwait(false);
            }
            else if (waits is not { Count: > 0 })
            {
                return;
            }

            if (waits is { Count: > 0 })
            {
                await Task.WhenAll(waits).WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A guest write's copy of the clusters it claimed, after the view reads of them; the failure policy applies.</summary>
    private async ValueTask CopyClaimsAsync(List<ClusterRun> mine, CancellationToken cancellationToken)
    {
        var copied = false;
        try
        {
            Task[]? leases = null;
            lock (_lock)
            {
                if (_leases.Count > 0)
                {
                    leases = [.. _leases.Where(l => mine.Exists(l.Intersects)).Select(l => l.Done.Task)];
                }
            }

            if (leases is { Length: > 0 })
            {
                await Task.WhenAll(leases).WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            foreach (var claim in mine)
            {
                if (_writeBehind is { } writeBehind)
                {
                    await CopyBehindAsync(claim, writeBehind, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await CopyAsync(claim, cancellationToken).ConfigureAwait(false);
                }
            }

            copied = true;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            HandleCopyFailure(mine, e);
            if (_policy == OnCopyBeforeWriteError.FailGuestWrite)
            {
                throw new BackupJobException(BackupErrorReason.CopyBeforeWriteFailed, $"copy before write of disk '{Disk}' failed: {e.Message}", e);
            }
        }
        finally
        {
            lock (_lock)
            {
                // Copied, or else (cancelled) the live image still holds the old content. A
                // failure handled above has released the claims already.
                ReleaseClaimsLocked(mine, restore: !copied);
            }
        }
    }

    /// <summary>
    /// Push: claims the next pending run (at most <paramref name="buffer"/>'s length) and copies
    /// it into the target. Returns the bytes copied; 0 once nothing is pending and every copy
    /// by a guest write has finished.
    /// </summary>
    /// <exception cref="BackupJobException">The copy failed, or the job's point in time is broken.</exception>
    public async ValueTask<long> CopyNextAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            List<ClusterRun>? mine = null;
            Task[] waits = [];
            lock (_lock)
            {
                ThrowIfFailedLocked();
                var found = _cursor < _pending.Size ? _pending.FindNextDirty(_cursor) : -1;
                if (found < 0 && _outstanding > _claims.Count)
                {
                    // Clusters given back by a failed guest write lie behind the cursor.
                    found = _pending.FindNextDirty(0);
                }

                if (found >= 0)
                {
                    ClaimLocked(found, _pending.Size, buffer.Length, ref mine);
                    _cursor = mine![^1].End;
                }
                else
                {
                    waits = [.. _claims.Select(c => c.Done.Task)];
                    if (waits.Length == 0)
                    {
                        return 0;
                    }
                }
            }

            if (mine is null)
            {
                await Task.WhenAll(waits).WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            var copied = false;
            try
            {
                // ClaimLocked may take several runs that are apart, one buffer's worth in all.
                var bytes = 0L;
                foreach (var claim in mine)
                {
                    await CopyAsync(claim, buffer, cancellationToken).ConfigureAwait(false);
                    bytes += claim.Length;
                }

                copied = true;
                return bytes;
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw new BackupJobException(BackupErrorReason.CopyFailed, $"backup of disk '{Disk}' failed: {e.Message}", e);
            }
            finally
            {
                lock (_lock)
                {
                    ReleaseClaimsLocked(mine, restore: !copied);
                }
            }
        }
    }

    /// <summary>
    /// Pull: reads the disk as it was at the instant: from the scratch where a guest write has
    /// copied the old content aside, zeroes where nothing was allocated, the live image
    /// elsewhere (under a lease, so a guest write to those clusters waits for the read).
    /// </summary>
    /// <exception cref="BackupJobException">The job failed or ended.</exception>
    public async ValueTask ReadPointInTimeAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await PrefetchCopiesAsync(offset, buffer.Length, cancellationToken).ConfigureAwait(false);
        var position = offset;
        var end = offset + buffer.Length;
        while (position < end)
        {
            Task? wait = null;
            ClusterRun? lease = null;
            Source source;
            long runEnd;
            lock (_lock)
            {
                ThrowIfFailedLocked();
                runEnd = end;
                foreach (var claim in _claims)
                {
                    if (claim.Contains(position))
                    {
                        wait = claim.Done.Task;
                        break;
                    }

                    if (claim.Offset > position && claim.Offset < runEnd)
                    {
                        runEnd = claim.Offset;
                    }
                }

                if (wait is null)
                {
                    var pending = _pending.GetExtent(position, runEnd - position);
                    if (pending.Dirty)
                    {
                        source = Source.Live;
                        runEnd = pending.End;
                        lease = new ClusterRun(position, runEnd);
                        _leases.Add(lease);
                    }
                    else
                    {
                        var copied = _copied?.GetExtent(position, pending.Length) ?? new BitmapExtent(position, pending.Length, false);
                        source = copied.Dirty ? Source.Store : Source.Zeroes;
                        runEnd = copied.End;
                    }
                }
                else
                {
                    source = Source.Zeroes;
                }
            }

            if (wait is not null)
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            var slice = buffer.Slice((int)(position - offset), (int)(runEnd - position));
            try
            {
                switch (source)
                {
                    case Source.Live:
                        await _live.ReadAsync(position, slice, cancellationToken).ConfigureAwait(false);
                        break;
                    case Source.Store when _writeBehind is { } writeBehind:
                        await writeBehind.ReadAsync(position, slice, cancellationToken).ConfigureAwait(false);
                        break;
                    case Source.Store:
                        await _store.Image.ReadAsync(position, slice, cancellationToken).ConfigureAwait(false);
                        break;
                    default:
                        slice.Span.Clear();
                        break;
                }
            }
            finally
            {
                if (lease is not null)
                {
                    lock (_lock)
                    {
                        _leases.Remove(lease);
                    }

                    lease.Done.TrySetResult();
                }
            }

            position = runEnd;
        }

        lock (_lock)
        {
            // Once a failed copy has failed the job, guest writes no longer wait for leases, so
            // a live read that overlapped the failure may hold newer data: never serve it.
            ThrowIfFailedLocked();
        }
    }

    /// <summary>
    /// Pull: when a view read covers several runs of copied clusters, starts reading them all
    /// from the scratch before the first is read. Guest writes copy scattered clusters, which
    /// lie in the scratch in the order they were copied, not the disk's, and the scratch's data
    /// is written past the page cache (<see cref="Qcow2Image.WriteGatheredDirectly"/>): read
    /// one after another, each run would wait for the disk by itself.
    /// </summary>
    private async ValueTask PrefetchCopiesAsync(long offset, long length, CancellationToken cancellationToken)
    {
        if (_copied is null || _store.Image is not Qcow2Image scratch)
        {
            return;
        }

        var runs = 0;
        lock (_lock)
        {
            for (var position = offset; position < offset + length && runs < 2;)
            {
                var extent = _copied.GetExtent(position, offset + length - position);
                runs += extent.Dirty ? 1 : 0;
                position = extent.End;
            }
        }

        if (runs >= 2)
        {
            await scratch.PrefetchAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops copy-before-write: later guest writes pass untouched, and this returns once no
    /// copy is in flight, so the store can be closed.
    /// </summary>
    public async Task DetachAsync()
    {
        Task[] waits;
        lock (_lock)
        {
            Volatile.Write(ref _quiet, 1);
            waits = [.. _claims.Select(c => c.Done.Task), .. _leases.Select(l => l.Done.Task)];
        }

        await Task.WhenAll(waits).ConfigureAwait(false);

        // The claims waited for have registered their copies; those must be in the scratch
        // (or have failed) before the scratch is closed.
        if (_writeBehind is not null)
        {
            await _writeBehind.DrainAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops copy-before-write for a hand-over to the next host (<see cref="BackupJob.HandOverAsync"/>):
    /// call it once no guest, copier or view reader is left. Waits for what is in flight, puts
    /// every copy held in memory into the scratch, and returns where the copying has got to:
    /// every cluster outside <see cref="CopyProgress.Pending"/> is in the store. Null when the
    /// job has failed, or a copy is still claimed: then nothing can be carried over.
    /// </summary>
    public async Task<CopyProgress?> HandOverAsync()
    {
        Task[] waits;
        lock (_lock)
        {
            waits = [.. _claims.Select(c => c.Done.Task), .. _leases.Select(l => l.Done.Task)];
        }

        await Task.WhenAll(waits).ConfigureAwait(false);
        if (_writeBehind is not null)
        {
            await _writeBehind.DrainAsync().ConfigureAwait(false);
        }

        lock (_lock)
        {
            Volatile.Write(ref _quiet, 1);
            return _failure is null && _claims.Count == 0 && _leases.Count == 0
                ? new CopyProgress(_pending.Clone(), _copied?.Clone(), InitialBytes, CopiedBytes)
                : null;
        }
    }

    /// <summary>Takes the pending runs inside [start, end), at most <paramref name="maxBytes"/> in all, as new claims.</summary>
    private void ClaimLocked(long start, long end, long maxBytes, ref List<ClusterRun>? mine)
    {
        var position = start;
        while (position < end && maxBytes > 0)
        {
            var next = _pending.FindNextDirty(position);
            if (next < 0 || next >= end)
            {
                break;
            }

            var run = _pending.GetExtent(next, Math.Min(end - next, maxBytes));
            var claim = new ClusterRun(next, run.End);
            _pending.ClearRange(claim.Offset, claim.Length);
            _claims.Add(claim);
            (mine ??= []).Add(claim);
            _outstanding += 1 - Bits(claim);
            maxBytes -= claim.Length;
            position = claim.End;
        }

    }

    /// <summary>Ends claims: copied ones into <see cref="_copied"/>, others back to <see cref="_pending"/> when <paramref name="restore"/>.</summary>
    private void ReleaseClaimsLocked(List<ClusterRun>? claims, bool restore)
    {
        if (claims is null)
        {
            return;
        }

        foreach (var claim in claims)
        {
            if (!_claims.Remove(claim))
            {
                continue;
            }

            if (restore)
            {
                _pending.SetRange(claim.Offset, claim.Length);
                _outstanding += Bits(claim);
            }
            else if (_quiet == 0)
            {
                _copied?.SetRange(claim.Offset, claim.Length);
                Interlocked.Add(ref _copiedBytes, claim.Length);
            }

            _outstanding--;
            claim.Done.TrySetResult();
        }

    }

    private void HandleCopyFailure(List<ClusterRun>? claims, Exception error)
    {
        Exception? failure = null;
        lock (_lock)
        {
            if (_policy == OnCopyBeforeWriteError.FailGuestWrite)
            {
                ReleaseClaimsLocked(claims, restore: true);
                return;
            }

            if (_failure is null)
            {
                _failure = failure = new BackupJobException(BackupErrorReason.CopyBeforeWriteFailed, $"copy before write of disk '{Disk}' failed: {error.Message}", error);
            }

            Volatile.Write(ref _quiet, 1);
            ReleaseClaimsLocked(claims, restore: false);
        }

        if (failure is not null)
        {
            _onJobFailure(failure);
        }
    }

    private void ThrowIfFailedLocked()
    {
        if (_failure is not null)
        {
            throw new BackupJobException(BackupErrorReason.JobEnded, $"backup of disk '{Disk}' failed: {_failure.InnerException?.Message ?? _failure.Message}", _failure);
        }

        if (_quiet != 0)
        {
            throw new BackupJobException(BackupErrorReason.JobEnded, $"backup job of disk '{Disk}' has ended");
        }
    }

    private async ValueTask CopyAsync(ClusterRun claim, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(claim.Length, MaxCopyBytes));
        try
        {
            await CopyAsync(claim, buffer, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads the claim's old content into memory, where the view finds it, and leaves its scratch write to <paramref name="writeBehind"/>.</summary>
    private async ValueTask CopyBehindAsync(ClusterRun claim, ScratchWriteBehind writeBehind, CancellationToken cancellationToken)
    {
        for (var position = claim.Offset; position < claim.End;)
        {
            var length = (int)Math.Min(MaxCopyBytes, claim.End - position);
            await writeBehind.ReserveAsync(length, cancellationToken).ConfigureAwait(false);
            var buffer = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                await _live.ReadAsync(position, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(buffer);
                writeBehind.Unreserve(length);
                throw;
            }

            writeBehind.Start(position, buffer, length);
            position += length;
        }
    }

    private async ValueTask CopyAsync(ClusterRun claim, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        for (var position = claim.Offset; position < claim.End;)
        {
            var chunk = buffer[..(int)Math.Min(buffer.Length, claim.End - position)];
            await _live.ReadAsync(position, chunk, cancellationToken).ConfigureAwait(false);
            await _store.WriteAsync(position, chunk, cancellationToken).ConfigureAwait(false);
            position += chunk.Length;
        }
    }

    private long Bits(ClusterRun run) => (run.Length + Cluster - 1) / Cluster;

    private enum Source
    {
        Live,
        Store,
        Zeroes,
    }
}

/// <summary>
/// Where one disk's copy-before-write has got to, carried from one host to the next with its
/// job (<see cref="CopyBeforeWrite.HandOverAsync"/>).
/// </summary>
/// <param name="Pending">Clusters whose point-in-time content is still only in the live image.</param>
/// <param name="Copied">Pull: clusters whose point-in-time content is in the scratch.</param>
/// <param name="InitialBytes">Bytes the job needed at its instant.</param>
/// <param name="CopiedBytes">Bytes in the store so far.</param>
internal sealed record CopyProgress(DirtyBitmap Pending, DirtyBitmap? Copied, long InitialBytes, long CopiedBytes);
