namespace Tidemark.Testing;

/// <summary>
/// One qemu-io process kept open on an NBD export, fed commands one at a time: a guest whose
/// connection outlives single commands. Opened with QEMU's <c>reconnect-delay</c>, it is the
/// guest that rides out a server restart, as a VM's NBD drive does: requests made while the
/// server is gone wait for the reconnection and are then sent again.
/// </summary>
public sealed class QemuIoSession : IAsyncDisposable
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(90);

    private readonly FollowedProcess _process;

    // Reply lines already matched: a reply is looked for after them.
    private int _seen;

    private QemuIoSession(FollowedProcess process) => _process = process;

    /// <summary>
    /// Opens <c>nbd+unix:///EXPORT?socket=SOCKET</c> as the raw protocol node (no format probing).
    /// </summary>
    /// <param name="reconnectDelay">QEMU's <c>reconnect-delay</c>: seconds a request waits for a lost server to come back; 0 fails it at once.</param>
    public static QemuIoSession OpenUnix(string socket, string export, int reconnectDelay)
    {
        var options = $"driver=nbd,server.type=unix,server.path={socket.Replace(",", ",,", StringComparison.Ordinal)},export={export},reconnect-delay={reconnectDelay}";

        // stdbuf makes qemu-io's output line-buffered (a pipe is fully buffered) and execs it.
        return new QemuIoSession(FollowedProcess.Start("stdbuf", ["-oL", Peer.Require("qemu-io"), "--image-opts", options], input: true));
    }

    /// <summary>Sends one command without waiting for its reply (<see cref="WaitForReplyAsync"/> does).</summary>
    public Task SendAsync(string command) => _process.SendLineAsync(command);

    /// <summary>
    /// Waits for the next reply line, after those already matched, that contains
    /// <paramref name="expected"/>; fails with qemu-io's output on a line naming a failure, on
    /// its exit, or after 90 s.
    /// </summary>
    public async Task WaitForReplyAsync(string expected)
    {
        // The prompt has no newline, so each reply reads as "qemu-io> wrote …".
        var found = await _process.WaitForLineAsync(_seen, l => l.Contains(expected, StringComparison.Ordinal) || IsFailure(l), ReplyTimeout);
        if (found < 0)
        {
            Assert.Fail($"no reply containing '{expected}' from qemu-io:\n{_process.Output()}");
        }

        var line = _process.Lines("")[found];
        Assert.False(IsFailure(line), $"qemu-io: {line}\n{_process.Output()}");
        _seen = found + 1;
    }

    /// <summary>Sends <paramref name="command"/> and waits for a reply containing <paramref name="expected"/>.</summary>
    public async Task RunAsync(string command, string expected)
    {
        await SendAsync(command);
        await WaitForReplyAsync(expected);
    }

    /// <summary>Ends qemu-io with its own <c>quit</c>, which flushes and closes the connection; fails if it does not exit cleanly.</summary>
    public async Task QuitAsync()
    {
        await SendAsync("quit");
        var exit = await _process.EndInputAndWaitAsync();
        Assert.True(exit == 0, $"qemu-io exited with {exit}:\n{_process.Output()}");
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();

    private static bool IsFailure(string line)
        => line.Contains("failed", StringComparison.OrdinalIgnoreCase) || line.Contains("Pattern verification", StringComparison.Ordinal);
}
