using System.Net;
using Microsoft.Extensions.Logging;
using Tidemark.Backup.Repository;
using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Backup.Serve;

/// <summary>
/// Instant recovery: serves a backup's disks over NBD at once (one export per disk, named after
/// its target), each through a writable qcow2 overlay whose backing file is the disk's chain
/// file at that point. A VM can boot from the exports and write; the writes land in the
/// overlays, which live in a directory of the caller's and are deleted on dispose, so the
/// repository is never written (its files are only opened read-only).
/// </summary>
public sealed class RecoveryExport : IAsyncDisposable
{
    private readonly List<Qcow2Image> _overlays;
    private readonly NbdServer _server;

    private RecoveryExport(BackupManifest manifest, List<Qcow2Image> overlays, NbdServer server)
    {
        Manifest = manifest;
        _overlays = overlays;
        _server = server;
    }

    /// <summary>The backup served.</summary>
    public BackupManifest Manifest { get; }

    /// <summary>Completes when the server stops.</summary>
    public Task Completion => _server.Completion;

    /// <summary>Creates the overlays in <paramref name="overlayDirectory"/> and starts serving on <paramref name="endPoint"/>.</summary>
    /// <exception cref="BackupException">No such backup.</exception>
    /// <exception cref="StorageException">A chain file cannot be opened.</exception>
    public static async Task<RecoveryExport> StartAsync(BackupRepository repository, string domain, string? checkpoint, EndPoint endPoint, string overlayDirectory, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(repository);
        var (manifest, _) = await repository.FindAsync(domain, checkpoint, cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(overlayDirectory);
        var overlays = new List<Qcow2Image>();
        try
        {
            foreach (var disk in manifest.Disks)
            {
                var overlay = Path.Combine(overlayDirectory, $"{disk.Name}.{manifest.Checkpoint}.overlay.qcow2");
                File.Delete(overlay);
                overlays.Add(await Qcow2Image.CreateAsync(overlay, new Qcow2CreateOptions
                {
                    Size = disk.VirtualSize,
                    BackingFile = repository.PathOf(domain, disk.File),
                    BackingFormat = ImageFormat.Qcow2,
                }, cancellationToken).ConfigureAwait(false));
            }

            var options = new NbdServerOptions();
            options.EndPoints.Add(endPoint);
            var exports = manifest.Disks.Select((d, i) => new NbdExport(d.Name, overlays[i])
            {
                Description = $"disk {d.Name} of domain '{domain}' at {manifest.Checkpoint} (writes go to a temporary overlay)",
                MultiConn = true,
            });
            var server = new NbdServer(options, exports.ToList(), loggerFactory);
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
            return new RecoveryExport(manifest, overlays, server);
        }
        catch
        {
            await DisposeOverlaysAsync(overlays).ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync().ConfigureAwait(false);
        await DisposeOverlaysAsync(_overlays).ConfigureAwait(false);
    }

    private static async Task DisposeOverlaysAsync(List<Qcow2Image> overlays)
    {
        foreach (var overlay in overlays)
        {
            var path = overlay.Path;
            await overlay.DisposeAsync().ConfigureAwait(false);
            File.Delete(path);
        }
    }
}
