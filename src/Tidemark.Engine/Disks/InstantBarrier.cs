namespace Tidemark.Engine.Disks;

/// <summary>
/// The one instant of a domain (design.md, "One instant per domain"): every guest write,
/// write-zeroes and discard of every disk of the domain passes it. Closing it makes new
/// requests wait and waits for those in flight to complete; while it is closed the engine adds
/// checkpoint bitmaps, snapshots bitmaps and installs or removes a job's
/// <see cref="IGuestWriteInterceptor"/>; opening it releases the waiters. A write completed
/// before the close is in the old interval, one that passes after the open in the new one;
/// none is in both or neither.
/// </summary>
/// <remarks>
/// <para>The requests are counted by a <see cref="RequestDoor"/>. <see cref="_closers"/> lets one
/// closer at a time hold the barrier (a checkpoint and a backup begin on the same domain take
/// turns); it is released only by <see cref="Open"/>, so the door is open whenever a closer
/// gets it.</para>
/// <para>A request that passed the barrier and then waits on something that waits for the
/// barrier to open would deadlock the closer; nothing the engine does while the barrier is
/// closed waits for a guest request.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (only WaitAsync is used), so there is nothing to dispose.")]
public sealed class InstantBarrier
{
    private readonly RequestDoor _door = new(shut: false);
    private readonly SemaphoreSlim _closers = new(1, 1);

    /// <summary>True from the start of <see cref="CloseAsync"/> until the closure is disposed.</summary>
    public bool IsClosed => _door.IsShut;

    /// <summary>
    /// Lets one guest request through, waiting while the barrier is closed. Dispose the passage
    /// when the request has completed (acknowledged or failed).
    /// </summary>
    public ValueTask<BarrierPassage> EnterAsync(CancellationToken cancellationToken = default)
    {
        var entered = _door.EnterAsync(cancellationToken);
        return entered.IsCompletedSuccessfully ? ValueTask.FromResult(new BarrierPassage(this)) : EnterSlowAsync(entered);
    }

    /// <summary>
    /// Closes the barrier: new guest requests wait from now on, and this returns once every
    /// request already through has completed. The barrier opens again when the returned
    /// closure is disposed. Closers take turns.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled while waiting; the barrier is open again.</exception>
    public async Task<BarrierClosure> CloseAsync(CancellationToken cancellationToken = default)
    {
        await _closers.WaitAsync(cancellationToken).ConfigureAwait(false);
        var drained = _door.Shut() ?? throw new InvalidOperationException("the barrier is closed without a closer");
        try
        {
            await drained.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Open();
            throw;
        }

        return new BarrierClosure(this);
    }

    internal void Leave() => _door.Leave();

    internal void Open()
    {
        _door.Open();
        _closers.Release();
    }

    private async ValueTask<BarrierPassage> EnterSlowAsync(ValueTask entered)
    {
        await entered.ConfigureAwait(false);
        return new BarrierPassage(this);
    }
}

/// <summary>One guest request's passage through an <see cref="InstantBarrier"/>; dispose it when the request completes.</summary>
public readonly struct BarrierPassage : IDisposable
{
    private readonly InstantBarrier? _barrier;

    internal BarrierPassage(InstantBarrier barrier)
    {
        _barrier = barrier;
    }

    public void Dispose() => _barrier?.Leave();
}

/// <summary>The barrier held closed; disposing it opens the barrier (once).</summary>
public sealed class BarrierClosure : IDisposable
{
    private InstantBarrier? _barrier;

    internal BarrierClosure(InstantBarrier barrier)
    {
        _barrier = barrier;
    }

    /// <summary>The barrier this closure holds, or null once it has been opened.</summary>
    internal InstantBarrier? Barrier => Volatile.Read(ref _barrier);

    public void Dispose() => Interlocked.Exchange(ref _barrier, null)?.Open();
}
