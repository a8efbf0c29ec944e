using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;

// A child process for the daemon crash tests: the daemon on a state directory and socket,
// "ready" on stdout once clients can connect. It never stops by itself; the test SIGKILLs it.
if (args.Length != 2)
{
    await Console.Error.WriteLineAsync("usage: daemon-crash-host STATE_DIR SOCKET");
    return 2;
}

var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = args[0], SocketPath = args[1] }, NullLoggerFactory.Instance);
await daemon.StartAsync(CancellationToken.None);
await Console.Out.WriteLineAsync("ready");
await Console.Out.FlushAsync();
await Task.Delay(Timeout.Infinite);
return 0;
