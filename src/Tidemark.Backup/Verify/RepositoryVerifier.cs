using System.IO.Hashing;
using Tidemark.Backup.Prune;
using Tidemark.Backup.Repository;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Backup.Verify;

/// <summary>One problem <see cref="RepositoryVerifier"/> found: the file, and the guest offset where it applies.</summary>
public sealed record VerifyFinding(string File, long? Offset, string Problem)
{
    public override string ToString() => Offset is { } offset ? $"{File}: offset {offset}: {Problem}" : $"{File}: {Problem}";
}

/// <summary>What a verification covered and found.</summary>
public sealed record VerifyResult(int Backups, int ChainFiles, long BytesRead, IReadOnlyList<VerifyFinding> Findings)
{
    public bool Passed => Findings.Count == 0;

    /// <summary>The domains whose fold an interrupted prune or merge left pending, finished before the checks.</summary>
    public IReadOnlyList<string> FinishedFolds { get; init; } = [];
}

/// <summary>
/// Re-reads every extent every manifest records, through the chain as a restore would, and
/// checks its XxHash64 (data) or that it reads as zeroes; and checks each chain file's
/// structure against the manifests: it opens as qcow2 with its backing chain, its size is the
/// disk's, its backing file is the previous file of the disk's chain, in format qcow2.
/// </summary>
/// <remarks>
/// Verify only reads, so it takes no lock, unless a domain has a fold pending
/// (<see cref="ChainFold"/>: a prune or merge was killed). Then its manifests and files are
/// between two states, each of which restores but neither of which is the one the fold
/// promised; so, as <c>backup run</c>, <c>prune</c> and <c>merge</c> do, verify takes the
/// repository lock, finishes the fold, reports it, and checks the repository it leaves, still
/// under the lock so that no writer changes it meanwhile. A fold being run by another process
/// holds the lock: verify is then refused (<see cref="BackupErrorReason.RepositoryLocked"/>).
/// </remarks>
public static class RepositoryVerifier
{
    private const int ReadSize = 4 << 20;

    /// <param name="domain">One domain, or every domain of the repository when null.</param>
    /// <param name="checkpoint">Only the backups up to this one (what restoring it needs), or all when null.</param>
    public static Task<VerifyResult> RunAsync(BackupRepository repository, string? domain, string? checkpoint, CancellationToken cancellationToken = default) =>
        RunAsync(repository, domain, checkpoint, null, cancellationToken);

    /// <param name="domain">One domain, or every domain of the repository when null.</param>
    /// <param name="checkpoint">Only the backups up to this one (what restoring it needs), or all when null.</param>
    /// <param name="report">Receives one plain line per step of a pending fold it finishes.</param>
    /// <exception cref="BackupException">A pending fold cannot be finished: the repository is locked or damaged.</exception>
    public static async Task<VerifyResult> RunAsync(BackupRepository repository, string? domain, string? checkpoint, Action<string>? report, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(repository);
        var domains = domain is null ? repository.Domains() : [domain];
        var pending = domains.Where(d => ChainFold.IsPending(repository, d)).ToList();
        using var repositoryLock = pending.Count > 0 ? RepositoryLock.Acquire(repository.Root) : null;
        var finished = new List<string>();
        foreach (var name in pending)
        {
            // Another command may have finished it between the look and the lock.
            if (await ChainFold.FinishPendingAsync(repository, name, report, cancellationToken).ConfigureAwait(false))
            {
                finished.Add(name);
            }
        }

        return await CheckAsync(repository, domain, domains, checkpoint, cancellationToken).ConfigureAwait(false) with { FinishedFolds = finished };
    }

    /// <summary>
    /// Checks what restoring <paramref name="checkpoint"/> of <paramref name="domain"/> reads: every
    /// chain file of the backups up to it, structure and checksums, as <c>verify --checkpoint</c>
    /// does, without finishing folds (the caller holds the lock or finished them).
    /// </summary>
    public static Task<VerifyResult> CheckPointAsync(BackupRepository repository, string domain, string checkpoint, CancellationToken cancellationToken = default) =>
        CheckAsync(repository, domain, [domain], checkpoint, cancellationToken);

    /// <summary>The exception for a damaged backup: the first finding, and how many more there are.</summary>
    public static BackupException Damaged(VerifyResult result, string what)
    {
        ArgumentNullException.ThrowIfNull(result);
        var more = result.Findings.Count > 1 ? $" (and {result.Findings.Count - 1} more problem(s); 'backup verify' lists them)" : "";
        return new BackupException(BackupErrorReason.RepositoryDamaged, $"{what}: {result.Findings[0]}{more}");
    }

    private static async Task<VerifyResult> CheckAsync(BackupRepository repository, string? domain, IReadOnlyList<string> domains, string? checkpoint, CancellationToken cancellationToken)
    {
        var findings = new List<VerifyFinding>();
        var backups = 0;
        var files = 0;
        long bytes = 0;
        foreach (var name in domains)
        {
            IReadOnlyList<BackupManifest> manifests;
            if (checkpoint is null)
            {
                manifests = await repository.ReadManifestsAsync(name, cancellationToken).ConfigureAwait(false);
                if (domain is not null && manifests.Count == 0)
                {
                    throw new BackupException(BackupErrorReason.NotFound, $"no backup of domain '{name}' in repository '{repository.Root}'");
                }
            }
            else
            {
                manifests = (await repository.FindAsync(name, checkpoint, cancellationToken).ConfigureAwait(false)).History;
            }

            var previousFile = new Dictionary<string, DiskManifest>(StringComparer.Ordinal);
            foreach (var manifest in manifests)
            {
                backups++;
                foreach (var disk in manifest.Disks)
                {
                    files++;
                    previousFile.TryGetValue(disk.Name, out var previous);
                    bytes += await VerifyDiskAsync(repository, manifest, disk, previous, findings, cancellationToken).ConfigureAwait(false);
                    previousFile[disk.Name] = disk;
                }
            }
        }

        return new VerifyResult(backups, files, bytes, findings);
    }

    private static async Task<long> VerifyDiskAsync(BackupRepository repository, BackupManifest manifest, DiskManifest disk, DiskManifest? previous, List<VerifyFinding> findings, CancellationToken cancellationToken)
    {
        var path = repository.PathOf(manifest.Domain, disk.File);
        var shown = Path.GetRelativePath(repository.Root, path);
        if (!File.Exists(path))
        {
            findings.Add(new VerifyFinding(shown, null, "chain file missing"));
            return 0;
        }

        if (disk.Level == BackupLevel.Incremental && (previous is null || disk.BackingFile != Path.GetFileName(previous.File)))
        {
            findings.Add(new VerifyFinding(shown, null, $"manifest names backing file '{disk.BackingFile}', but the disk's previous chain file is '{previous?.File}'"));
        }

        Qcow2Image image;
        try
        {
            image = await Qcow2Image.OpenAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is StorageException or IOException)
        {
            findings.Add(new VerifyFinding(shown, null, $"cannot be opened: {e.Message}"));
            return 0;
        }

        long bytes = 0;
        await using (image.ConfigureAwait(false))
        {
            if (image.VirtualSize != disk.VirtualSize)
            {
                findings.Add(new VerifyFinding(shown, null, $"virtual size {image.VirtualSize}, the manifest says {disk.VirtualSize}"));
            }

            if (image.BackingFileName != disk.BackingFile)
            {
                findings.Add(new VerifyFinding(shown, null, $"backing file '{image.BackingFileName}', the manifest says '{disk.BackingFile}'"));
            }

            if (LevelMismatch(disk, previous, image.BackingFileName) is { } mismatch)
            {
                findings.Add(new VerifyFinding(shown, null, mismatch));
            }

            if (disk.BackingFile is not null && image.BackingFormat != "qcow2")
            {
                findings.Add(new VerifyFinding(shown, null, $"backing format '{image.BackingFormat}', expected 'qcow2'"));
            }

            var buffer = new byte[ReadSize];
            foreach (var extent in disk.Extents)
            {
                var problem = await CheckExtentAsync(image, extent, buffer, cancellationToken).ConfigureAwait(false);
                bytes += extent.Length;
                if (problem is not null)
                {
                    findings.Add(new VerifyFinding(shown, extent.Offset, problem));
                }
            }
        }

        return bytes;
    }

    /// <summary>
    /// What is wrong when the manifest's level disagrees with the chain file's qcow2 header, or
    /// null. The header decides what a restore reads: a "full" with a backing file reads the
    /// older files through it, and an "incremental" without one reads zeroes wherever it
    /// stored nothing. So an edited or mixed-up level is damage even when the manifest's
    /// recorded backing name was edited to agree with it.
    /// </summary>
    private static string? LevelMismatch(DiskManifest disk, DiskManifest? previous, string? headerBacking)
    {
        if (disk.Level == BackupLevel.Full)
        {
            return headerBacking is null ? null : $"the manifest says level 'full', but the chain file has backing file '{headerBacking}' (a full has none)";
        }

        if (headerBacking is null)
        {
            return $"the manifest says level 'incremental', but the chain file has no backing file (an incremental is backed by the disk's previous chain file{(previous is null ? "" : $" '{Path.GetFileName(previous.File)}'")})";
        }

        if (previous is null)
        {
            return $"the manifest says level 'incremental', but the disk has no previous backup for backing file '{headerBacking}' to be";
        }

        var expected = Path.GetFileName(previous.File);
        return headerBacking == expected ? null : $"the manifest says level 'incremental', but the chain file's backing file '{headerBacking}' is not the previous point's file '{expected}'";
    }

    private static async Task<string?> CheckExtentAsync(Qcow2Image image, ExtentRecord extent, byte[] buffer, CancellationToken cancellationToken)
    {
        if (extent.Offset < 0 || extent.Length <= 0 || extent.Offset + extent.Length > image.VirtualSize)
        {
            return $"extent of {extent.Length} bytes lies outside the disk";
        }

        var hash = new XxHash64();
        try
        {
            for (var at = extent.Offset; at < extent.Offset + extent.Length; at += ReadSize)
            {
                var piece = buffer.AsMemory(0, (int)Math.Min(ReadSize, extent.Offset + extent.Length - at));
                await image.ReadAsync(at, piece, cancellationToken).ConfigureAwait(false);
                if (extent.Content == ExtentContent.Zero && piece.Span.ContainsAnyExcept((byte)0))
                {
                    return $"extent of {extent.Length} bytes recorded as zeroes does not read as zeroes";
                }

                hash.Append(piece.Span);
            }
        }
        catch (Exception e) when (e is StorageException or IOException or InvalidDataException)
        {
            return $"extent of {extent.Length} bytes cannot be read: {e.Message}";
        }

        if (extent.Content == ExtentContent.Data)
        {
            var actual = hash.GetCurrentHashAsUInt64().ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
            if (actual != extent.XxHash64)
            {
                return $"extent of {extent.Length} bytes has checksum {actual}, the manifest recorded {extent.XxHash64}";
            }
        }

        return null;
    }
}
