using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Daemon;
using D = Tidemark.Cli.Commands.Daemon.DaemonCommandDefinition;

namespace Tidemark.Cli.Commands.Daemon;

/// <summary>Runs <c>daemon</c> until SIGTERM or SIGINT, then stops it gracefully (domains left to the next daemon, or stopped with --stop-domains; images closed).</summary>
internal static class DaemonCommand
{
    public static async Task<int> RunAsync(ParseResult result, CliConsole console, CancellationToken cancellationToken)
    {
        var defaults = new DaemonOptions();
        var options = defaults with
        {
            StateDirectory = result.GetValue(D.StateDirectory) is { } state ? Path.GetFullPath(state) : defaults.StateDirectory,
            SocketPath = result.GetValue(D.Socket),
            GuestTcp = result.GetValue(D.GuestTcp),
            BackupTlsDirectory = result.GetValue(D.BackupTlsDirectory) is { } tls ? Path.GetFullPath(tls) : defaults.BackupTlsDirectory,
            BackupTlsVerifyPeer = !result.GetValue(D.BackupTlsNoVerify),
            KeepaliveInterval = result.GetValue(D.KeepaliveInterval),
            KeepaliveCount = result.GetValue(D.KeepaliveCount),
            StopDomains = result.GetValue(D.StopDomains),
        };
        using var host = TidemarkDaemon.CreateHost(options, result.GetValue(D.Verbose) ? LogLevel.Debug : LogLevel.Information);
        try
        {
            await host.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DaemonException e)
        {
            throw new CliException(e.Message, e);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped while starting: nothing is left running.
        }

        await console.Out.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        return 0;
    }
}
