using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;
using D = Tidemark.Cli.Commands.Nbd.NbdServeCommandDefinition;

namespace Tidemark.Cli.Commands.Nbd;

/// <summary>Runs <c>nbd serve</c>: opens the image, starts the server and waits until it stops or is interrupted.</summary>
internal static class NbdServeCommand
{
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

        using var tls = LoadTls(result.GetValue(D.TlsCreds), !result.GetValue(D.TlsNoVerifyPeer));
        var options = new NbdServerOptions
        {
            Limits = new NbdServerLimits { MaxConnections = shared },
            Persistent = result.GetValue(D.Persistent),
            Tls = tls,
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

        var format = ParseFormat(result.GetValue(D.Format));
        IBlockImage image;
        try
        {
            image = await DiskImage.OpenAsync(file.FullName, format, readOnly, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException)
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
                DirtyBitmaps = FindBitmaps(image, bitmaps),
            };
            var server = new NbdServer(options, [export], loggerFactory);
            await using (server.ConfigureAwait(false))
            {
                try
                {
                    await server.StartAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or IOException)
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

    private static ImageFormat? ParseFormat(string? name)
    {
        try
        {
            return name is null ? null : ImageFormatNames.Parse(name);
        }
        catch (StorageException e)
        {
            throw new CliException($"--format: {e.Message}", e);
        }
    }

    /// <summary>
    /// The persistent bitmaps named by -B, as qemu-nbd finds them: each must exist in the qcow2
    /// image and be consistent (formats.md §2.7), with qemu-nbd's words when one is not.
    /// </summary>
    private static List<IDirtyBitmapSource> FindBitmaps(IBlockImage image, string[] names)
    {
        var sources = new List<IDirtyBitmapSource>();
        foreach (var name in names)
        {
            if (image is not Qcow2Image qcow2)
            {
                throw new CliException($"Bitmap '{name}' is not found: only qcow2 images have persistent bitmaps");
            }

            var bitmap = qcow2.Bitmaps.Find(name) ?? throw new CliException($"Bitmap '{name}' is not found");
            if (bitmap.Inconsistent)
            {
                throw new CliException($"Bitmap '{name}' is inconsistent and cannot be used");
            }

            if (sources.Any(s => s.Name == name))
            {
                throw new CliException($"Bitmap '{name}' specified twice");
            }

            sources.Add(new DirtyBitmapSource(name, bitmap.Bitmap));
        }

        return sources;
    }
}
