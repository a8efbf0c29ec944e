using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tidemark.Remote.Server;
using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>
/// The remote protocol fuzzing corpus (<c>bench/fuzz/corpus/remote</c>) and any input the
/// fuzzer found (<c>bench/fuzz/findings/remote</c>) replayed as a client's byte stream over the
/// server's socket, as the harness feeds them: each connection ends the way the protocol
/// allows, with no failure the server has to log as unexpected.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Fact]
    public async Task RemoteInputs_EndTheirConnectionWithoutAnUnexpectedFailure()
    {
        var ct = TestContext.Current.CancellationToken;
        var inputs = FuzzInputs.Of("remote");
        using var dir = new TempDirectory("remote-fuzz-replay");
        await using var hypervisor = new ProtocolTestHypervisor();
        var log = new WarningLog();
        await using var server = new RemoteServer(new RemoteServerOptions { SocketPath = dir.File("sock") }, hypervisor, log);
        await server.StartAsync(ct);

        var answered = 0;
        foreach (var input in inputs)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(server.Options.SocketPath), ct);
            var send = SendAllAsync(socket, await File.ReadAllBytesAsync(input, ct), ct);

            // The server cancels the calls still running when its client closes, so the
            // client half-closes only once replies have stopped coming (or none came at all).
            var received = await DrainAsync(socket, TimeSpan.FromMilliseconds(500), send, ct);
            await send;
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // The server has already dropped the connection.
            }

            received += await DrainAsync(socket, Timeout.InfiniteTimeSpan, Task.CompletedTask, ct);
            answered += received > 0 ? 1 : 0;
        }

        Assert.True(inputs.Count >= 5, $"only {inputs.Count} inputs");
        Assert.True(answered >= 4, $"only {answered} of {inputs.Count} inputs got a reply");
        Assert.Empty(log.Warnings);
    }

    private static async Task SendAllAsync(Socket socket, byte[] input, CancellationToken ct)
    {
        try
        {
            var rest = input.AsMemory();
            while (!rest.IsEmpty)
            {
                rest = rest[await socket.SendAsync(rest, ct)..];
            }
        }
        catch (SocketException)
        {
        }
    }

    /// <summary>Reads until the server closes, or is silent for <paramref name="quiet"/> once <paramref name="send"/> is done (never while the client still sends).</summary>
    private static async Task<long> DrainAsync(Socket socket, TimeSpan quiet, Task send, CancellationToken ct)
    {
        long received = 0;
        var buffer = new byte[65536];
        while (true)
        {
            try
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
                idle.CancelAfter(quiet);
                var n = await socket.ReceiveAsync(buffer, idle.Token);
                if (n == 0)
                {
                    return received;
                }

                received += n;
            }
            catch (SocketException)
            {
                return received;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested && send.IsCompleted)
            {
                return received;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
            }
        }
    }

    /// <summary>Keeps what the server logs as a warning or worse: its unexpected failures.</summary>
    private sealed class WarningLog : ILoggerFactory, ILogger
    {
        public ConcurrentQueue<string> Warnings { get; } = new();

        public ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning)
            {
                Warnings.Enqueue($"{logLevel}: {formatter(state, exception)} {exception}");
            }
        }

        public void Dispose()
        {
        }
    }
}
