namespace Tidemark.Engine.Disks;

/// <summary>
/// The paused state of a running domain: a gate in front of every disk that every guest request
/// (reads, flushes and extent queries too, since a paused VM issues nothing) passes before the
/// domain's <see cref="InstantBarrier"/>. Pausing shuts the gate: new requests wait at it, and the
/// pause completes once every request already through has completed, as QEMU's <c>stop</c> drains
/// block I/O before the VM reads as paused (qemuProcessStopCPUs). Resuming opens it and releases
/// the waiters.
/// </summary>
/// <remarks>
/// <para>The gate is not the instant barrier, and never holds it: checkpoints and backup jobs
/// close that barrier in turns, so a barrier held closed while paused would make a checkpoint of
/// a paused domain wait for the resume. A request waiting here has passed no barrier, so a
/// closer of the barrier never waits for it. Jobs (a pull export, a push copy) read the live
/// image directly and are not guest requests: they go on while paused.</para>
/// <para>The requests are counted by a <see cref="RequestDoor"/>; <see cref="_lock"/> guards
/// <see cref="_paused"/>. One pause at a time: the domain's lock (libvirt's SUSPEND and MODIFY
/// jobs) serialises <see cref="PauseAsync"/> and <see cref="Resume"/>.</para>
/// <para>A waiter leaves when its request's token is cancelled: that is how a stop ends it,
/// since the NBD server cancels every request of the connections it ends.</para>
/// </remarks>
public sealed class GuestGate
{
    private readonly RequestDoor _door;
    private readonly Lock _lock = new();

    // True once the pause has drained the requests in flight (the domain reads as paused).
    private bool _paused;

    /// <summary>An open gate.</summary>
    public GuestGate()
        : this(paused: false)
    {
    }

    /// <summary>
    /// A gate open, or (<paramref name="paused"/>) shut and paused from the start: a domain
    /// started paused, which no request has reached yet, so there is nothing to drain.
    /// </summary>
    public GuestGate(bool paused)
    {
        _door = new RequestDoor(shut: paused);
        _paused = paused;
    }

    /// <summary>True from the moment the pause has drained the requests in flight until the resume.</summary>
    public bool IsPaused
    {
        get
        {
            lock (_lock)
            {
                return _paused;
            }
        }
    }

    /// <summary>True from the start of a pause until the resume (requests arriving now wait).</summary>
    public bool IsShut => _door.IsShut;

    /// <summary>Guest requests through the gate that have not completed yet.</summary>
    public int InFlight => _door.InFlight;

    /// <summary>Guest requests waiting for the resume.</summary>
    public int Waiting => _door.Waiting;

    /// <summary>
    /// Lets one guest request through, waiting while the domain is paused. Dispose the passage
    /// when the request has completed (acknowledged or failed).
    /// </summary>
    /// <exception cref="OperationCanceledException">The request was cancelled while it waited (its connection ended).</exception>
    public ValueTask<GatePassage> EnterAsync(CancellationToken cancellationToken = default)
    {
        var entered = _door.EnterAsync(cancellationToken);
        return entered.IsCompletedSuccessfully ? ValueTask.FromResult(new GatePassage(this)) : EnterSlowAsync(entered);
    }

    /// <summary>
    /// Shuts the gate and returns once every request already through has completed; the gate
    /// then reads as paused. A gate already shut is left as it is.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled while draining; the gate is open again.</exception>
    internal async Task PauseAsync(CancellationToken cancellationToken)
    {
        if (_door.Shut() is not { } drained)
        {
            return;
        }

        try
        {
            await drained.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Resume();
            throw;
        }

        lock (_lock)
        {
            _paused = true;
        }
    }

    /// <summary>
    /// Holds the guest's requests for a moment (a disk's resize): shuts the gate and returns once
    /// the requests in flight have completed, without the domain reading as paused; disposing
    /// the result opens it again. A gate already shut (a paused domain) is left as it is.
    /// </summary>
    internal async Task<IDisposable> HoldAsync(CancellationToken cancellationToken)
    {
        if (_door.Shut() is not { } drained)
        {
            return new Hold(null);
        }

        try
        {
            await drained.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _door.Open();
            throw;
        }

        return new Hold(_door);
    }

    /// <summary>Opens the gate: the waiting requests go on, in no particular order.</summary>
    internal void Resume()
    {
        lock (_lock)
        {
            _paused = false;
        }

        _door.Open();
    }

    internal void Leave() => _door.Leave();

    private sealed class Hold(RequestDoor? door) : IDisposable
    {
        public void Dispose() => door?.Open();
    }

    private async ValueTask<GatePassage> EnterSlowAsync(ValueTask entered)
    {
        await entered.ConfigureAwait(false);
        return new GatePassage(this);
    }
}

/// <summary>One guest request's passage through a <see cref="GuestGate"/>; dispose it when the request completes.</summary>
public readonly struct GatePassage : IDisposable
{
    private readonly GuestGate? _gate;

    internal GatePassage(GuestGate gate)
    {
        _gate = gate;
    }

    public void Dispose() => _gate?.Leave();
}
