using System.Text.Json;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;
using Tidemark.Backup.Verify;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Backup.Prune;

/// <summary>What a fold did to one domain.</summary>
/// <param name="NewBase">The domain's oldest backup now.</param>
/// <param name="Dropped">The backups no longer restorable, oldest first.</param>
/// <param name="Folded">The chain files rewritten as standalone fulls (relative to the domain's directory).</param>
public sealed record FoldResult(string Domain, string NewBase, IReadOnlyList<string> Dropped, IReadOnlyList<string> Folded);

/// <summary>
/// <c>backup prune</c> and <c>backup merge</c>: makes one backup of a domain its oldest, folding
/// the backups before it into it, so that they stop being restorable and their files go.
/// </summary>
/// <remarks>
/// No qcow2 header is ever rewritten in place. For each disk whose first remaining backup is an
/// incremental, that point of the chain (read through its backing files) is copied into a new
/// standalone qcow2 under a temporary name, fsynced, and renamed over that backup's own chain
/// file, and the directory fsynced: the next backup's file still names its backing file by
/// that name, and reads the same data through it, so every point stays restorable at every
/// instant. Then the manifests are rewritten (temporary file, fsync, rename), the dropped
/// backups' manifests removed (a backup exists exactly when its manifest does), and last the
/// files no manifest names. All of it runs under the repository lock, after a pending record
/// (<see cref="PendingFold"/>) is written; every step can run again, so the next command that
/// finds the record finishes the fold.
/// </remarks>
public static class ChainFold
{
    public const string PendingFileName = ".fold.json";

    /// <summary>Bytes per checksummed extent of a folded file (the size a backup reads its exports in).</summary>
    private const int ExtentSize = 4 << 20;

    /// <summary>Keeps the newest <paramref name="keep"/> backups of each domain (or of <paramref name="domain"/>) restorable.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="keep"/> is below 1: the newest backup is the host's checkpoint base and always stays.</exception>
    /// <exception cref="BackupException">The repository is locked or damaged.</exception>
    public static async Task<IReadOnlyList<FoldResult>> PruneAsync(BackupRepository repository, string? domain, int keep, Action<string>? report = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(repository);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        var results = new List<FoldResult>();
        using var repositoryLock = RepositoryLock.Acquire(repository.Root);
        foreach (var name in domain is null ? repository.Domains() : [domain])
        {
            await FinishPendingAsync(repository, name, report, cancellationToken).ConfigureAwait(false);
            var manifests = await repository.ReadManifestsAsync(name, cancellationToken).ConfigureAwait(false);
            if (manifests.Count > keep)
            {
                results.Add(await FoldAsync(repository, name, manifests, manifests[^keep].Checkpoint, report, null, cancellationToken).ConfigureAwait(false));
            }
        }

        return results;
    }

    /// <summary>Folds every backup of <paramref name="domain"/> before <paramref name="until"/> into it.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.NotFound"/>: no such backup; or the repository is locked or damaged.</exception>
    public static Task<FoldResult> MergeAsync(BackupRepository repository, string domain, string until, Action<string>? report = null, CancellationToken cancellationToken = default) =>
        MergeAsync(repository, domain, until, report, null, cancellationToken);

    internal static async Task<FoldResult> MergeAsync(BackupRepository repository, string domain, string until, Action<string>? report, Action<FoldStep>? afterStep, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(repository);
        using var repositoryLock = RepositoryLock.Acquire(repository.Root);
        await FinishPendingAsync(repository, domain, report, cancellationToken).ConfigureAwait(false);
        var (_, history) = await repository.FindAsync(domain, until, cancellationToken).ConfigureAwait(false);
        var manifests = await repository.ReadManifestsAsync(domain, cancellationToken).ConfigureAwait(false);
        return await FoldAsync(repository, domain, manifests, history[^1].Checkpoint, report, afterStep, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a fold an earlier command left pending (it was killed) to its end, and says so. The
    /// caller holds the repository lock. Returns false when no fold of <paramref name="domain"/> was pending.
    /// </summary>
    public static async Task<bool> FinishPendingAsync(BackupRepository repository, string domain, Action<string>? report, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(repository);
        var path = PendingPath(repository, domain);
        if (!File.Exists(path))
        {
            return false;
        }

        PendingFold? pending;
        try
        {
            pending = JsonSerializer.Deserialize(await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false), ManifestJsonContext.Default.PendingFold);
        }
        catch (JsonException e)
        {
            // Written atomically, so only damage makes it unreadable.
            throw new BackupException(BackupErrorReason.RepositoryDamaged, $"pending fold record '{path}' cannot be read: {e.Message}", e);
        }

        var manifests = await repository.ReadManifestsAsync(domain, cancellationToken).ConfigureAwait(false);
        if (pending is null || !manifests.Any(m => m.Checkpoint == pending.NewBase))
        {
            throw new BackupException(BackupErrorReason.RepositoryDamaged, $"pending fold record '{path}' names backup '{pending?.NewBase}', which the repository does not hold");
        }

        report?.Invoke($"finishing the fold of domain '{domain}' into {pending.NewBase} that an interrupted command left");
        await RunAsync(repository, pending, manifests, report, null, cancellationToken).ConfigureAwait(false);
        return true;
    }

    private static async Task<FoldResult> FoldAsync(BackupRepository repository, string domain, IReadOnlyList<BackupManifest> manifests, string newBase, Action<string>? report, Action<FoldStep>? afterStep, CancellationToken cancellationToken)
    {
        var dropped = manifests.TakeWhile(m => m.Checkpoint != newBase).Select(m => m.Checkpoint).ToList();
        var pending = new PendingFold(domain, newBase, dropped, DateTimeOffset.UtcNow);
        if (dropped.Count == 0)
        {
            report?.Invoke($"domain '{domain}': {newBase} is already the oldest backup; nothing to fold");
            return new FoldResult(domain, newBase, [], []);
        }

        // The fold copies what it reads into the new base and records fresh checksums for it:
        // a damaged chain file folded in would pass every later verify. So it must pass first.
        var check = await RepositoryVerifier.CheckPointAsync(repository, domain, newBase, cancellationToken).ConfigureAwait(false);
        if (!check.Passed)
        {
            throw RepositoryVerifier.Damaged(check, $"domain '{domain}': the backups up to {newBase} are damaged; nothing was folded");
        }

        await DurableFile.WriteAsync(PendingPath(repository, domain), JsonSerializer.SerializeToUtf8Bytes(pending, ManifestJsonContext.Default.PendingFold), cancellationToken).ConfigureAwait(false);
        afterStep?.Invoke(FoldStep.Recorded);
        return await RunAsync(repository, pending, manifests, report, afterStep, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<FoldResult> RunAsync(BackupRepository repository, PendingFold pending, IReadOnlyList<BackupManifest> manifests, Action<string>? report, Action<FoldStep>? afterStep, CancellationToken cancellationToken)
    {
        var domain = pending.Domain;
        var dropped = pending.Dropped.ToHashSet(StringComparer.Ordinal);
        var kept = manifests.Where(m => !dropped.Contains(m.Checkpoint)).ToList();

        // Each disk's first remaining backup is its new base; the disks of one backup are
        // folded before its manifest is rewritten once.
        var firsts = new Dictionary<string, BackupManifest>(StringComparer.Ordinal);
        foreach (var manifest in kept)
        {
            foreach (var disk in manifest.Disks)
            {
                firsts.TryAdd(disk.Name, manifest);
            }
        }

        var folded = new List<string>();
        foreach (var group in firsts.GroupBy(f => f.Value.Checkpoint, f => f.Key))
        {
            var manifest = kept.First(m => m.Checkpoint == group.Key);
            var disks = manifest.Disks.ToList();
            var changed = false;
            for (var i = 0; i < disks.Count; i++)
            {
                if (disks[i].Level == BackupLevel.Incremental && group.Contains(disks[i].Name))
                {
                    disks[i] = await FoldDiskAsync(repository, manifest, disks[i], afterStep, cancellationToken).ConfigureAwait(false);
                    folded.Add(disks[i].File);
                    changed = true;
                    report?.Invoke($"{disks[i].Name}: {disks[i].File} is a full now ({disks[i].DataBytes} bytes of data): the backups before {manifest.Checkpoint} folded into it");
                }
            }

            if (changed)
            {
                await repository.WriteManifestAsync(manifest with { Parent = null, Disks = disks }, cancellationToken).ConfigureAwait(false);
                afterStep?.Invoke(FoldStep.ManifestRewritten);
            }
        }

        // The manifests go before their files: a backup whose manifest remains keeps every file.
        var directory = repository.DomainDirectory(domain);
        foreach (var checkpoint in pending.Dropped)
        {
            File.Delete(repository.ManifestPath(domain, checkpoint));
        }

        DurableFile.SyncDirectory(directory);
        afterStep?.Invoke(FoldStep.ManifestsDropped);
        foreach (var leftover in await repository.RemoveLeftoversAsync(domain, cancellationToken).ConfigureAwait(false))
        {
            report?.Invoke($"removed {leftover}");
        }

        afterStep?.Invoke(FoldStep.FilesRemoved);
        File.Delete(PendingPath(repository, domain));
        DurableFile.SyncDirectory(directory);
        report?.Invoke($"domain '{domain}': {pending.Dropped.Count} backup(s) folded into {pending.NewBase}, now the oldest");
        return new FoldResult(domain, pending.NewBase, pending.Dropped, folded);
    }

    /// <summary>
    /// Makes <paramref name="disk"/>'s chain file standalone and describes what it holds. A file
    /// that has no backing file already was renamed into place by a fold that died before
    /// rewriting the manifest: it is only described.
    /// </summary>
    private static async Task<DiskManifest> FoldDiskAsync(BackupRepository repository, BackupManifest manifest, DiskManifest disk, Action<FoldStep>? afterStep, CancellationToken cancellationToken)
    {
        var path = repository.PathOf(manifest.Domain, disk.File);
        bool standalone;
        var header = await Qcow2Image.OpenDetachedAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (header.ConfigureAwait(false))
        {
            standalone = header.BackingFileName is null;
        }

        if (!standalone)
        {
            var temp = DurableFile.TempPath(path);
            try
            {
                var source = await Qcow2Image.OpenAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false);
                await using (source.ConfigureAwait(false))
                {
                    var compress = manifest.Compression == "zstd";
                    var target = await Qcow2Image.CreateAsync(temp, new Qcow2CreateOptions { Size = source.VirtualSize, Zstd = compress }, cancellationToken).ConfigureAwait(false);
                    await using (target.ConfigureAwait(false))
                    {
                        await SparseCopy.CopyAsync(source, target, compress, cancellationToken).ConfigureAwait(false);
                        await target.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                }

                afterStep?.Invoke(FoldStep.StandaloneWritten);
                DurableFile.Commit(temp, path);
            }
            catch
            {
                File.Delete(temp);
                throw;
            }

            afterStep?.Invoke(FoldStep.StandaloneRenamed);
        }

        var extents = await DescribeAsync(path, cancellationToken).ConfigureAwait(false);
        return disk with
        {
            Level = BackupLevel.Full,
            Reason = $"the backups before {manifest.Checkpoint} folded into it (was: {disk.Reason})",
            Base = null,
            BackingFile = null,
            DataBytes = extents.Sum(e => e.Length),
            Extents = extents,
        };
    }

    /// <summary>The data extents of a standalone chain file with their checksums, as a backup records them.</summary>
    private static async Task<IReadOnlyList<ExtentRecord>> DescribeAsync(string path, CancellationToken cancellationToken)
    {
        var records = new List<ExtentRecord>();
        var image = await Qcow2Image.OpenAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (image.ConfigureAwait(false))
        {
            var buffer = new byte[ExtentSize];
            for (var at = 0L; at < image.VirtualSize;)
            {
                var extents = await image.GetExtentsAsync(at, image.VirtualSize - at, cancellationToken).ConfigureAwait(false);
                foreach (var extent in extents)
                {
                    for (var piece = extent.Offset; extent.Kind == ExtentKind.Data && piece < extent.End; piece += ExtentSize)
                    {
                        var data = buffer.AsMemory(0, (int)Math.Min(ExtentSize, extent.End - piece));
                        await image.ReadAsync(piece, data, cancellationToken).ConfigureAwait(false);
                        records.Add(new ExtentRecord(piece, data.Length, ExtentContent.Data, DiskTransfer.Checksum(data.Span)));
                    }
                }

                at = extents[^1].End;
            }
        }

        return records;
    }

    /// <summary>True when a fold of <paramref name="domain"/> was begun and not finished (its record is on disk).</summary>
    public static bool IsPending(BackupRepository repository, string domain)
    {
        ArgumentNullException.ThrowIfNull(repository);
        return File.Exists(PendingPath(repository, domain));
    }

    private static string PendingPath(BackupRepository repository, string domain) => Path.Combine(repository.DomainDirectory(domain), PendingFileName);
}
