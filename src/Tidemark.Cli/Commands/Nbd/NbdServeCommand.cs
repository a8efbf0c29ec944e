using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using D = Tidemark.Cli.Commands.Nbd.NbdServeCommandDefinition;

namespace Tidemark.Cli.Commands.Nbd;

/// <summary>Runs <c>nbd serve</c>: opens the image, starts the server and waits until it stops or is interrupted.</summary>
internal static class NbdServeCommand
{
    // The first bytes of a qcow2 image: "QFI\xfb".
    private static readonly byte[] Qcow2Magic = [0x51, 0x46, 0x49, 0xfb];

    public static async Task<int> RunAsync(ParseResult result, CliConsole console, CancellationToken cancellationToken)
    {
        var file = result.GetValue(D.Image)!;
        var readOnly = result.GetValue(D.ReadOnly);
        var shared = result.GetValue(D.Shared);
        var bitmaps = result.GetValue(D.Bitmaps) ?? [];
        if (shared < 1)
        {
            throw new CliException($"--shared must be at least 1, not {shared}");
        }

        if (!file.Exists)
        {
            throw new CliException($"cannot open '{file.FullName}': no such file");
        }

        if (await IsQcow2Async(file, cancellationToken).ConfigureAwait(false))
        {
            throw new CliException($"'{file.FullName}' is a qcow2 image; nbd serve serves raw images only for now");
        }

        if (bitmaps.Length > 0)
        {
            throw new CliException($"bitmap '{bitmaps[0]}' not found: raw images have no persistent bitmaps");
        }

        var options = new NbdServerOptions
        {
            Limits = new NbdServerLimits { MaxConnections = shared },
            Persistent = result.GetValue(D.Persistent),
            Tls = LoadTls(result.GetValue(D.TlsCreds), !result.GetValue(D.TlsNoVerifyPeer)),
        };
        var socketPath = result.GetValue(D.Socket);
        if (socketPath is not null)
        {
            options.EndPoints.Add(new UnixDomainSocketEndPoint(Path.GetFullPath(socketPath)));
        }
        else
        {
            var bind = result.GetValue(D.Bind)!;
            if (!IPAddress.TryParse(bind, out var address))
            {
                throw new CliException($"--bind: '{bind}' is not an IP address");
            }

            options.EndPoints.Add(new IPEndPoint(address, result.GetValue(D.Port)));
        }

        using var loggerFactory = LoggerFactory.Create(builder => builder
            .AddSimpleConsole(o => o.SingleLine = true)
            .SetMinimumLevel(result.GetValue(D.Verbose) ? LogLevel.Debug : LogLevel.Warning));

        IBlockImage image;
        try
        {
            image = RawImage.Open(file.FullName, readOnly);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot open '{file.FullName}': {e.Message}", e);
        }

        await using (image.ConfigureAwait(false))
        {
            var export = new NbdExport(result.GetValue(D.ExportName) ?? string.Empty, image)
            {
                Description = result.GetValue(D.Description),
                ReadOnly = readOnly,
                AllocationDepth = result.GetValue(D.AllocationDepth),
                MultiConn = shared > 1,
            };
            var server = new NbdServer(options, [export], loggerFactory);
            await using (server.ConfigureAwait(false))
            {
                try
                {
                    await server.StartAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException e)
                {
                    throw new CliException($"cannot listen on {options.EndPoints[0]}: {e.Message}", e);
                }

                var pidFile = result.GetValue(D.PidFile);
                if (pidFile is not null)
                {
                    await File.WriteAllTextAsync(pidFile, $"{Environment.ProcessId}\n", cancellationToken).ConfigureAwait(false);
                }

                try
                {
                    await server.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    // Interrupted (SIGINT/SIGTERM): a normal way to stop a server.
                }
            }
        }

        return 0;
    }

    private static NbdTlsCredentials? LoadTls(string? directory, bool verifyPeer)
    {
        if (directory is null)
        {
            return null;
        }

        try
        {
            return NbdTlsCredentials.LoadServer(directory, verifyPeer);
        }
        catch (NbdException e)
        {
            throw new CliException(e.Message, e);
        }
    }

    private static async Task<bool> IsQcow2Async(FileInfo file, CancellationToken cancellationToken)
    {
        var head = new byte[Qcow2Magic.Length];
        var stream = file.OpenRead();
        await using (stream.ConfigureAwait(false))
        {
            var n = await stream.ReadAtLeastAsync(head, head.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            return n == head.Length && head.AsSpan().SequenceEqual(Qcow2Magic);
        }
    }
}
