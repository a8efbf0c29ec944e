namespace Tidemark.Remote.Server;

/// <summary>
/// The server's side of libvirt's keepalive protocol for one connection (libvirt-rpc.md, the
/// KEEPALIVE program; libvirt's src/rpc/virkeepalive.c): once the client has asked for it, a
/// client silent for an interval is sent a PING, and one still silent after
/// <c>count</c> PINGs is dead, so its connection is closed and its calls cancelled. Any
/// message from the client, a PONG or a call, starts the count again. Without this, a client
/// whose host vanished (a network partition, a frozen VM running a backup script) would hold
/// its connection slot and its calls for ever.
/// </summary>
internal sealed class ServerKeepalive(TimeSpan interval, int count)
{
    /// <summary>When the last whole message arrived, in <see cref="Environment.TickCount64"/> milliseconds.</summary>
    private long _lastReceived = Environment.TickCount64;

    /// <summary>Whole messages read so far: a PONG can arrive within the millisecond of its PING, so arrival times alone cannot tell that one came.</summary>
    private long _received;

    private int _started;

    /// <summary>1 while the server itself stops reading the client (all its call slots busy): PONGs then wait unread, and silence proves nothing.</summary>
    private int _readingPaused;

    /// <summary>Called for every whole message read from the client.</summary>
    public void MessageReceived()
    {
        Volatile.Write(ref _lastReceived, Environment.TickCount64);
        Interlocked.Increment(ref _received);
    }

    /// <summary>The server stops reading the client until one of its calls ends.</summary>
    public void ReadingPaused() => Volatile.Write(ref _readingPaused, 1);

    /// <summary>The server reads the client again; the silence is counted from now.</summary>
    public void ReadingResumed()
    {
        Volatile.Write(ref _readingPaused, 0);
        MessageReceived();
    }

    /// <summary>True the first time it is called on a connection where keepalive is configured; the caller then runs <see cref="RunAsync"/>.</summary>
    public bool TryStart() => interval > TimeSpan.Zero && Interlocked.Exchange(ref _started, 1) == 0;

    /// <summary>
    /// Pings the client while it is silent; returns when <paramref name="cancellationToken"/>
    /// ends the connection, or after calling <paramref name="dead"/> with the seconds of silence.
    /// </summary>
    public async Task RunAsync(Action ping, Action<double> dead, CancellationToken cancellationToken)
    {
        var intervalMs = (long)interval.TotalMilliseconds;
        var countToDeath = count;

        // As virKeepAliveStart: the first PING is due an interval after the last message.
        var seen = Interlocked.Read(ref _received);
        var intervalStart = Volatile.Read(ref _lastReceived);
        while (true)
        {
            var received = Interlocked.Read(ref _received);
            var now = Environment.TickCount64;
            if (Volatile.Read(ref _readingPaused) != 0)
            {
                seen = received;
                countToDeath = count;
                intervalStart = now;
            }
            else if (received != seen)
            {
                seen = received;
                countToDeath = count;
                intervalStart = Volatile.Read(ref _lastReceived);
            }

            var wait = intervalStart + intervalMs - now;
            if (wait > 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(wait), cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (countToDeath == 0)
            {
                dead((now - Volatile.Read(ref _lastReceived)) / 1000.0);
                return;
            }

            countToDeath--;
            intervalStart = now;
            ping();
        }
    }
}
