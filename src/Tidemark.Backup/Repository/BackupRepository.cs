using System.Text.Json;

namespace Tidemark.Backup.Repository;

/// <summary>
/// The on-disk layout of a backup repository:
/// <code>
/// REPO/.lock                                 the writer lock (<see cref="RepositoryLock"/>)
/// REPO/DOMAIN/CHECKPOINT.json                one manifest per complete backup, written last
/// REPO/DOMAIN/CHECKPOINT.domain.xml          the domain XML at that backup
/// REPO/DOMAIN/CHECKPOINT.checkpoint.xml      the host's checkpoint XML at that backup
/// REPO/DOMAIN/DISK/CHECKPOINT.qcow2          the disk's chain file: a full has no backing file,
///                                            an incremental names the previous one (same
///                                            directory, relative name, format qcow2)
/// REPO/DOMAIN/.pending.json                  a backup in progress (what to undo if it dies)
/// </code>
/// So <c>qemu-img info --backing-chain</c>, <c>qemu-img compare</c> and QEMU open any point of
/// a chain directly.
/// </summary>
public sealed class BackupRepository
{
    public const string ManifestSuffix = ".json";
    public const string DomainXmlSuffix = ".domain.xml";
    public const string CheckpointXmlSuffix = ".checkpoint.xml";
    public const string ChainFileSuffix = ".qcow2";
    public const string PendingFileName = ".pending.json";

    public BackupRepository(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = Path.GetFullPath(root);
    }

    public string Root { get; }

    public string DomainDirectory(string domain) => Path.Combine(Root, domain);

    public string ManifestPath(string domain, string checkpoint) => Path.Combine(Root, domain, checkpoint + ManifestSuffix);

    public string DomainXmlPath(string domain, string checkpoint) => Path.Combine(Root, domain, checkpoint + DomainXmlSuffix);

    public string CheckpointXmlPath(string domain, string checkpoint) => Path.Combine(Root, domain, checkpoint + CheckpointXmlSuffix);

    public string PendingPath(string domain) => Path.Combine(Root, domain, PendingFileName);

    /// <summary>A chain file's name relative to the domain's directory.</summary>
    public static string ChainFileName(string disk, string checkpoint) => disk + "/" + checkpoint + ChainFileSuffix;

    /// <summary>The full path of a file a manifest names relative to its domain's directory.</summary>
    public string PathOf(string domain, string relative) => Path.Combine(Root, domain, relative);

    /// <summary>The domains with at least one directory in the repository, by name.</summary>
    public IReadOnlyList<string> Domains() =>
        Directory.Exists(Root)
            ? Directory.GetDirectories(Root).Select(Path.GetFileName).OfType<string>().Where(n => !n.StartsWith('.')).Order(StringComparer.Ordinal).ToList()
            : [];

    /// <summary>The complete backups of <paramref name="domain"/>, oldest first.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.RepositoryDamaged"/>: a manifest cannot be read.</exception>
    public async Task<IReadOnlyList<BackupManifest>> ReadManifestsAsync(string domain, CancellationToken cancellationToken = default)
    {
        var directory = DomainDirectory(domain);
        if (!Directory.Exists(directory))
        {
            return [];
        }

        var manifests = new List<BackupManifest>();
        foreach (var path in Directory.GetFiles(directory, "*" + ManifestSuffix))
        {
            if (Path.GetFileName(path).StartsWith('.'))
            {
                continue;
            }

            manifests.Add(await ReadManifestAsync(path, cancellationToken).ConfigureAwait(false));
        }

        return manifests.OrderBy(m => m.Completed).ThenBy(m => m.Sequence).ToList();
    }

    /// <summary>The backup of <paramref name="domain"/> at <paramref name="checkpoint"/>, or the latest when null.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.NotFound"/>: no such backup.</exception>
    public async Task<(BackupManifest Manifest, IReadOnlyList<BackupManifest> History)> FindAsync(string domain, string? checkpoint, CancellationToken cancellationToken = default)
    {
        var manifests = await ReadManifestsAsync(domain, cancellationToken).ConfigureAwait(false);
        if (manifests.Count == 0)
        {
            throw new BackupException(BackupErrorReason.NotFound, $"no backup of domain '{domain}' in repository '{Root}'");
        }

        var index = checkpoint is null ? manifests.Count - 1 : IndexOf(manifests, checkpoint);
        if (index < 0)
        {
            throw new BackupException(BackupErrorReason.NotFound, $"no backup at checkpoint '{checkpoint}' of domain '{domain}' in repository '{Root}'");
        }

        return (manifests[index], manifests.Take(index + 1).ToList());
    }

    private static int IndexOf(IReadOnlyList<BackupManifest> manifests, string checkpoint)
    {
        for (var i = 0; i < manifests.Count; i++)
        {
            if (manifests[i].Checkpoint == checkpoint)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Reads one manifest.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.RepositoryDamaged"/>: not a manifest this version reads.</exception>
    public static async Task<BackupManifest> ReadManifestAsync(string path, CancellationToken cancellationToken = default)
    {
        BackupManifest? manifest;
        try
        {
            var stream = File.OpenRead(path);
            await using (stream.ConfigureAwait(false))
            {
                manifest = await JsonSerializer.DeserializeAsync(stream, ManifestJsonContext.Default.BackupManifest, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (JsonException e)
        {
            throw new BackupException(BackupErrorReason.RepositoryDamaged, $"manifest '{path}' cannot be read: {e.Message}", e);
        }

        if (manifest is null || manifest.Format > BackupManifest.CurrentFormat)
        {
            throw new BackupException(BackupErrorReason.RepositoryDamaged, $"manifest '{path}' has format {manifest?.Format}, newer than this program reads ({BackupManifest.CurrentFormat})");
        }

        return manifest;
    }

    /// <summary>Writes <paramref name="manifest"/> atomically: from this moment the backup is complete.</summary>
    public Task WriteManifestAsync(BackupManifest manifest, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(manifest, ManifestJsonContext.Default.BackupManifest);
        return DurableFile.WriteAsync(ManifestPath(manifest.Domain, manifest.Checkpoint), bytes, cancellationToken);
    }

    /// <summary>The backup in progress recorded for <paramref name="domain"/>, or null.</summary>
    public async Task<PendingBackup?> ReadPendingAsync(string domain, CancellationToken cancellationToken = default)
    {
        var path = PendingPath(domain);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            var bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
            return JsonSerializer.Deserialize(bytes, ManifestJsonContext.Default.PendingBackup);
        }
        catch (JsonException)
        {
            // Written atomically, so only damage makes it unreadable; then nothing is known to undo.
            return null;
        }
    }

    /// <summary>Records <paramref name="pending"/> before the job begins.</summary>
    public Task WritePendingAsync(PendingBackup pending, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pending);
        Directory.CreateDirectory(DomainDirectory(pending.Domain));
        return DurableFile.WriteAsync(PendingPath(pending.Domain), JsonSerializer.SerializeToUtf8Bytes(pending, ManifestJsonContext.Default.PendingBackup), cancellationToken);
    }

    /// <summary>Forgets the backup in progress of <paramref name="domain"/>: nothing of it is left on the host.</summary>
    public void DeletePending(string domain)
    {
        var path = PendingPath(domain);
        if (File.Exists(path))
        {
            File.Delete(path);
            DurableFile.SyncDirectory(DomainDirectory(domain));
        }
    }

    /// <summary>Writes a text document (domain or checkpoint XML) atomically.</summary>
    public static Task WriteTextAsync(string path, string text, CancellationToken cancellationToken = default) =>
        DurableFile.WriteAsync(path, System.Text.Encoding.UTF8.GetBytes(text), cancellationToken);

    /// <summary>
    /// Removes what interrupted runs left: temporary files, and chain files and documents that
    /// no manifest names (a backup that never completed). The caller holds the lock, so nothing
    /// is being written. Returns the removed paths, relative to the repository.
    /// </summary>
    public async Task<IReadOnlyList<string>> RemoveLeftoversAsync(CancellationToken cancellationToken = default)
    {
        var removed = new List<string>();
        foreach (var domain in Domains())
        {
            var directory = DomainDirectory(domain);
            var manifests = await ReadManifestsAsync(domain, cancellationToken).ConfigureAwait(false);
            var checkpoints = manifests.Select(m => m.Checkpoint).ToHashSet(StringComparer.Ordinal);
            var chainFiles = manifests.SelectMany(m => m.Disks).Select(d => PathOf(domain, d.File)).ToHashSet(StringComparer.Ordinal);
            foreach (var file in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
            {
                var name = Path.GetFileName(file);
                var leftover = name.EndsWith(DurableFile.TempSuffix, StringComparison.Ordinal)
                    || (name.EndsWith(ChainFileSuffix, StringComparison.Ordinal) && !chainFiles.Contains(file))
                    || (Path.GetDirectoryName(file) == directory && DocumentCheckpoint(name) is { } checkpoint && !checkpoints.Contains(checkpoint));
                if (leftover)
                {
                    File.Delete(file);
                    DurableFile.SyncDirectory(Path.GetDirectoryName(file)!);
                    removed.Add(Path.GetRelativePath(Root, file));
                }
            }
        }

        return removed;
    }

    private static string? DocumentCheckpoint(string name)
    {
        foreach (var suffix in (ReadOnlySpan<string>)[DomainXmlSuffix, CheckpointXmlSuffix])
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                return name[..^suffix.Length];
            }
        }

        return null;
    }
}
