using System.Net.Sockets;
using Tidemark.Remote;
using Tidemark.Remote.Server;

namespace Tidemark.Fuzz;

/// <summary>
/// The libvirt remote protocol server's byte stream from a client: the input is everything a
/// client sends (framed calls and anything else), over a real unix socket to a
/// <see cref="RemoteServer"/> backed by <see cref="FuzzHypervisor"/>; the replies are read and
/// dropped. The server may refuse or drop the connection as the protocol allows; a failure it
/// logs as unexpected (a warning or worse) is a finding.
/// </summary>
internal sealed class RemoteCallTarget : FuzzTarget, IDisposable
{
    // How long the server may stay silent before the client takes it that every call it
    // could answer has been answered.
    private static readonly TimeSpan QuietPeriod = TimeSpan.FromMilliseconds(5);

    // An execution this slow is written down (bench/fuzz/run sets the directory), with the step
    // it is in, so that a stall afl reports as a hang can be placed.
    private static readonly TimeSpan StallReport = TimeSpan.FromSeconds(3);
    private static readonly string? StallDirectory = Environment.GetEnvironmentVariable("TIDEMARK_FUZZ_STALLS");

    private volatile string _step = "";

    private readonly string _directory;
    private readonly FindingLog _log = new();
    private readonly RemoteServer _server;

    public RemoteCallTarget()
    {
        _directory = Directory.CreateTempSubdirectory("tidemark-fuzz-").FullName;
        // One call at a time: the calls of an input then run in the order sent, so an input
        // covers the same code each time it runs (afl's "stability"), which coverage guidance needs.
        var options = new RemoteServerOptions
        {
            SocketPath = Path.Combine(_directory, "sock"),
            Limits = new RemoteServerLimits { MaxConcurrentCallsPerConnection = 1 },
        };
        _server = new RemoteServer(options, new FuzzHypervisor(), _log);
        _server.StartAsync().GetAwaiter().GetResult();
    }

    // SharpFuzz calls a synchronous delegate; this entry point alone waits.
    public override void Run(byte[] input) => RunAsync(input).GetAwaiter().GetResult();

    public void Dispose()
    {
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    private async Task RunAsync(byte[] input)
    {
        await using var watchdog = StallDirectory is null ? null : new Timer(_ => RecordStall(input), null, StallReport, Timeout.InfiniteTimeSpan);
        _step = "connect";
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(_server.Options.SocketPath)).ConfigureAwait(false);

            // Sending and draining at once: a client that stops reading its replies would
            // block the server's writes, and with them its reads of the rest of the input.
            // The client half-closes only once the server has gone quiet, because the server
            // cancels the calls still running when its client closes, and those calls' argument
            // decoding and dispatch are what this harness is for.
            _step = "send and drain until quiet";
            var send = SendAllAsync(socket, input);
            await DrainAsync(socket, QuietPeriod, send).ConfigureAwait(false);
            _step = "finish sending";
            await send.ConfigureAwait(false);
            Shutdown(socket);
            _step = "drain to the end";
            await DrainAsync(socket, Timeout.InfiniteTimeSpan, Task.CompletedTask).ConfigureAwait(false);
            await send.ConfigureAwait(false);
        }

        _step = "wait for the server to forget the connection";

        // The server removes a connection before closing its socket, so once the client has
        // seen the end of the stream, the connection's work (and its logging) is over.
        while (_server.ConnectionCount > 0)
        {
            await Task.Delay(1).ConfigureAwait(false);
        }

        _log.ThrowIfFailed();
        _step = "";
    }

    private void RecordStall(byte[] input)
    {
        ThreadPool.GetAvailableThreads(out var workers, out _);
        var report = $"step: {_step}\nconnections: {_server.ConnectionCount}\npool threads: {ThreadPool.ThreadCount}, available {workers}, queued {ThreadPool.PendingWorkItemCount}\ninput: {Convert.ToHexString(input)}\n";
        Directory.CreateDirectory(StallDirectory!);
        File.WriteAllText(Path.Combine(StallDirectory!, $"stall-{Environment.ProcessId}-{DateTime.UtcNow:HHmmss.fff}.txt"), report);
    }

    private static async Task SendAllAsync(Socket socket, byte[] input)
    {
        try
        {
            var rest = input.AsMemory();
            while (!rest.IsEmpty)
            {
                rest = rest[await socket.SendAsync(rest).ConfigureAwait(false)..];
            }

        }
        catch (SocketException)
        {
            // The server dropped the connection before reading everything: an allowed ending.
        }
    }

    private static void Shutdown(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
    }

    /// <summary>
    /// Reads replies until the server closes the connection, or sends nothing for
    /// <paramref name="quiet"/> once <paramref name="send"/> is done. Reading never stops while
    /// the client still sends: a server whose replies are not read stops reading in turn.
    /// </summary>
    private static async Task DrainAsync(Socket socket, TimeSpan quiet, Task send)
    {
        var buffer = new byte[65536];
        while (true)
        {
            try
            {
                using var idle = new CancellationTokenSource(quiet);
                if (await socket.ReceiveAsync(buffer, idle.Token).ConfigureAwait(false) == 0)
                {
                    return;
                }
            }
            catch (SocketException)
            {
                return;
            }
            catch (OperationCanceledException) when (send.IsCompleted)
            {
                return;
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}
