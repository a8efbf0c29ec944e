using System.CommandLine;
using System.Net;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Serve;
using Tidemark.Nbd.Client;
using Tidemark.Storage;
using D = Tidemark.Cli.Commands.Backup.Serve.BackupServeCommandDefinition;

namespace Tidemark.Cli.Commands.Backup.Serve;

/// <summary>Runs <c>backup serve</c>: prints each export's URI, serves until SIGINT/SIGTERM, then removes the overlays.</summary>
internal static class BackupServeCommand
{
    public static async Task<int> RunAsync(ParseResult result, CliConsole console, CancellationToken cancellationToken)
    {
        var repository = new BackupRepository(result.GetValue(D.Repository)!);
        var domain = result.GetValue(D.Domain)!;
        EndPoint endPoint;
        Func<string, string> uriOf;
        if (result.GetValue(D.Socket) is { } socket)
        {
            var path = Path.GetFullPath(socket);
            try
            {
                endPoint = UnixSocketPath.EndPoint(path);
            }
            catch (IOException e)
            {
                throw new CliException($"--socket: {e.Message}");
            }

            uriOf = disk => NbdUri.ForUnixSocket(path, disk);
        }
        else
        {
            var bind = result.GetValue(D.Bind)!;
            if (!IPAddress.TryParse(bind, out var address))
            {
                throw new CliException($"--bind: '{bind}' is not an IP address");
            }

            var port = result.GetValue(D.Port)!.Value;
            var tcp = new IPEndPoint(address, port);
            endPoint = tcp;
            uriOf = disk => NbdUri.ForTcp(tcp, disk);
        }

        var ownDirectory = result.GetValue(D.OverlayDirectory) is null;
        var overlays = result.GetValue(D.OverlayDirectory) ?? Directory.CreateTempSubdirectory("tidemark-serve-").FullName;
        try
        {
            var served = await RecoveryExport.StartAsync(repository, domain, result.GetValue(D.Checkpoint), endPoint, overlays, null, cancellationToken).ConfigureAwait(false);
            await using (served.ConfigureAwait(false))
            {
                foreach (var disk in served.Manifest.Disks)
                {
                    await console.Out.WriteLineAsync($"serving disk {disk.Name} of domain '{domain}' at {served.Manifest.Checkpoint}: {uriOf(disk.Name)}").ConfigureAwait(false);
                }

                await console.Out.FlushAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    await served.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    // Interrupted: the normal way to stop serving.
                }
            }
        }
        finally
        {
            if (ownDirectory)
            {
                Directory.Delete(overlays, recursive: true);
            }
        }

        return 0;
    }
}
