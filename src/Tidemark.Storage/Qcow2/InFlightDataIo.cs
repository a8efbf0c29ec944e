namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Counts the guest-data reads and writes that run outside an image's metadata lock, so that a
/// host cluster is never freed (and so never handed out again) while one of them still targets
/// it. Requests enter while holding the metadata lock, right after resolving their host
/// offsets, and leave without it; whoever frees clusters drains while holding the lock, so no
/// request can enter during the wait and every one in flight finishes against the mapping it
/// resolved.
/// </summary>
internal sealed class InFlightDataIo
{
    private readonly Lock _sync = new();
    private int _count;
    private TaskCompletionSource? _drained;

    /// <summary>Number of requests in flight (for tests and diagnostics).</summary>
    public int Count
    {
        get
        {
            lock (_sync)
            {
                return _count;
            }
        }
    }

    /// <summary>A request starts its unlocked part. Caller holds the metadata lock.</summary>
    public void Enter()
    {
        lock (_sync)
        {
            _count++;
        }
    }

    /// <summary>A request has finished its unlocked part (successfully or not).</summary>
    public void Exit()
    {
        TaskCompletionSource? drained = null;
        lock (_sync)
        {
            if (--_count == 0)
            {
                (drained, _drained) = (_drained, null);
            }
        }

        drained?.TrySetResult();
    }

    /// <summary>
    /// Completes once no request is in flight. Caller holds the metadata lock, which keeps new
    /// requests from entering; the ones in flight need nothing the caller holds to finish.
    /// </summary>
    public Task DrainAsync()
    {
        lock (_sync)
        {
            if (_count == 0)
            {
                return Task.CompletedTask;
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task;
        }
    }
}
