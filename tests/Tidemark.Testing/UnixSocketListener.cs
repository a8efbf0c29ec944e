using System.Net.Sockets;

namespace Tidemark.Testing;

/// <summary>Waits for a server started as a separate process to listen on its unix socket.</summary>
public static class UnixSocketListener
{
    /// <summary>
    /// Returns once a connection to <paramref name="socket"/> succeeds; fails after
    /// <paramref name="timeout"/> (one minute by default: a cold Native AOT start on a loaded
    /// two-core machine takes seconds, not milliseconds).
    /// </summary>
    public static async Task WaitAsync(string socket, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(1));
        while (DateTime.UtcNow < deadline)
        {
            if (File.Exists(socket))
            {
                using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await probe.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken).ConfigureAwait(false);
                    return;
                }
                catch (SocketException)
                {
                    // Bound but not listening yet, or a stale path from an earlier run.
                }
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        throw new TimeoutException($"nothing listens on {socket}");
    }
}
