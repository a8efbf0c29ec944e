namespace Tidemark.Engine.Disks;

/// <summary>
/// The mechanism under <see cref="InstantBarrier"/> and <see cref="GuestGate"/>: a door guest
/// requests pass, counted while they are through. Shutting it makes new requests wait and
/// reports when the ones through have all left; opening it lets the waiters through.
/// </summary>
/// <remarks>
/// Locking: <see cref="_lock"/> guards every field. Who may shut and open, and when, is the
/// owner's business: this type only keeps one shut at a time (<see cref="Shut"/> on a shut door
/// changes nothing).
/// </remarks>
internal sealed class RequestDoor
{
    private readonly Lock _lock = new();

    // Requests through and not yet left.
    private int _inFlight;

    // Requests waiting for the door to open.
    private int _waiting;

    // Non-null while shut: completed when the door opens.
    private TaskCompletionSource? _opened;

    // Non-null while a shut waits for _inFlight to reach 0.
    private TaskCompletionSource? _drained;

    /// <summary>A door open, or shut with nothing through (a domain started paused).</summary>
    public RequestDoor(bool shut)
    {
        if (shut)
        {
            _opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public bool IsShut
    {
        get
        {
            lock (_lock)
            {
                return _opened is not null;
            }
        }
    }

    public int InFlight
    {
        get
        {
            lock (_lock)
            {
                return _inFlight;
            }
        }
    }

    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiting;
            }
        }
    }

    /// <summary>Counts one request through, waiting while the door is shut; call <see cref="Leave"/> when it has completed.</summary>
    /// <exception cref="OperationCanceledException">Cancelled while waiting.</exception>
    public ValueTask EnterAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_opened is null)
            {
                _inFlight++;
                return ValueTask.CompletedTask;
            }
        }

        return EnterSlowAsync(cancellationToken);
    }

    public void Leave()
    {
        lock (_lock)
        {
            _inFlight--;
            if (_inFlight == 0 && _drained is not null)
            {
                _drained.TrySetResult();
                _drained = null;
            }
        }
    }

    /// <summary>
    /// Shuts the door: requests arriving from now on wait. Returns a task that completes once
    /// every request through has left, or null when the door was shut already.
    /// </summary>
    public Task? Shut()
    {
        lock (_lock)
        {
            if (_opened is not null)
            {
                return null;
            }

            _opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_inFlight == 0)
            {
                return Task.CompletedTask;
            }

            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task;
        }
    }

    /// <summary>Opens the door: the waiting requests go through, in no particular order.</summary>
    public void Open()
    {
        TaskCompletionSource? opened;
        lock (_lock)
        {
            opened = _opened;
            _opened = null;
            _drained = null;
        }

        opened?.TrySetResult();
    }

    private async ValueTask EnterSlowAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_opened is null)
                {
                    _inFlight++;
                    return;
                }

                wait = _opened.Task;
                _waiting++;
            }

            try
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                lock (_lock)
                {
                    _waiting--;
                }
            }
        }
    }
}
