using System.Text.Json;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

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
public sealed partial class BackupRepository
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

        RequireOneDomain(domain, manifests);
        return manifests.OrderBy(m => m.Completed).ThenBy(m => m.Sequence).ToList();
    }

    /// <summary>
    /// Refuses a domain directory whose manifests are not all of the domain it is named after,
    /// with one uuid: a directory copied or renamed from another domain's, or two domains of the
    /// same name (one undefined, another defined) backed up into one place. Their chains are not
    /// one chain, and a manifest's files are found under the domain it records, not this
    /// directory, so nothing may be backed up into it, restored or folded from it.
    /// </summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.OtherDomain"/>.</exception>
    private void RequireOneDomain(string domain, List<BackupManifest> manifests)
    {
        if (manifests.FirstOrDefault(m => m.Domain != domain) is { } stranger)
        {
            throw new BackupException(BackupErrorReason.OtherDomain, $"repository directory '{DomainDirectory(domain)}' holds backups of domain '{stranger.Domain}' ({ManifestPath(domain, stranger.Checkpoint)}), not of domain '{domain}'");
        }

        var uuids = manifests.Select(m => m.DomainUuid).OfType<string>().Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (uuids.Count > 1)
        {
            throw new BackupException(BackupErrorReason.OtherDomain, $"repository directory '{DomainDirectory(domain)}' holds backups of two domains named '{domain}', with uuids {uuids[0]} and {uuids[1]}");
        }
    }

    /// <summary>
    /// Refuses to back <paramref name="domain"/> with uuid <paramref name="uuid"/> up into a
    /// directory holding the backups of another domain of that name (the name was given to a new
    /// domain): its incrementals would build on another disk's chain.
    /// </summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.OtherDomain"/>.</exception>
    public void RequireDomainUuid(string domain, Guid uuid, IReadOnlyList<BackupManifest> manifests)
    {
        ArgumentNullException.ThrowIfNull(manifests);
        var expected = uuid.ToString();
        if (manifests.FirstOrDefault(m => m.DomainUuid is { } recorded && !string.Equals(recorded, expected, StringComparison.OrdinalIgnoreCase)) is { } other)
        {
            throw new BackupException(BackupErrorReason.OtherDomain, $"repository directory '{DomainDirectory(domain)}' holds backups of domain '{other.Domain}' with uuid {other.DomainUuid}, not of domain '{domain}' with uuid {expected} on the host: another domain of the same name; back it up into another repository");
        }
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
    /// Removes what interrupted runs of <paramref name="domain"/> left: temporary files, and
    /// chain files and documents of a backup that never completed (no manifest names them).
    /// Only names this client gives its files are candidates, in the places it puts them, and a
    /// chain file that a kept chain file builds on (its backing file, all the way down) is kept
    /// even when its own manifest is gone: the backups after it still need it. Nothing of
    /// another domain's directory, or of a file the client did not write, is touched. The caller
    /// holds the lock, so nothing is being written. Returns the removed paths, relative to the
    /// repository.
    /// </summary>
    public async Task<IReadOnlyList<string>> RemoveLeftoversAsync(string domain, CancellationToken cancellationToken = default)
    {
        var removed = new List<string>();
        var directory = DomainDirectory(domain);
        if (!Directory.Exists(directory))
        {
            return removed;
        }

        var manifests = await ReadManifestsAsync(domain, cancellationToken).ConfigureAwait(false);
        var kept = await KeptChainFilesAsync(domain, manifests, cancellationToken).ConfigureAwait(false);

        // A backup's documents stay with its manifest, or with a chain file of it that is kept.
        var checkpoints = manifests.Select(m => m.Checkpoint)
            .Concat(kept.Select(f => Path.GetFileName(f)).Where(n => n.EndsWith(ChainFileSuffix, StringComparison.Ordinal)).Select(n => n[..^ChainFileSuffix.Length]))
            .ToHashSet(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
        {
            var name = Path.GetFileName(file);
            var depth = Path.GetRelativePath(directory, file).Count(c => c == Path.DirectorySeparatorChar);
            var leftover = depth <= 1 && IsOwnTemporary(name)
                || (depth == 1 && name.EndsWith(ChainFileSuffix, StringComparison.Ordinal) && IsOwnCheckpoint(name[..^ChainFileSuffix.Length]) && !kept.Contains(file))
                || (depth == 0 && DocumentCheckpoint(name) is { } checkpoint && IsOwnCheckpoint(checkpoint) && !checkpoints.Contains(checkpoint));
            if (leftover)
            {
                File.Delete(file);
                DurableFile.SyncDirectory(Path.GetDirectoryName(file)!);
                removed.Add(Path.GetRelativePath(Root, file));
            }
        }

        return removed;
    }

    /// <summary>
    /// The chain files the manifests name and every file below them in their backing chains.
    /// A manifest records its file's backing name; only a file whose own manifest is gone is
    /// opened to read it, so a run does not open every chain file of the domain.
    /// </summary>
    private async Task<HashSet<string>> KeptChainFilesAsync(string domain, IReadOnlyList<BackupManifest> manifests, CancellationToken cancellationToken)
    {
        var backingOf = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var disk in manifests.SelectMany(m => m.Disks))
        {
            var file = PathOf(domain, disk.File);
            backingOf[file] = disk.BackingFile is { } backing ? Path.GetFullPath(backing, Path.GetDirectoryName(file)!) : null;
        }

        var kept = new HashSet<string>(backingOf.Keys, StringComparer.Ordinal);
        var queue = new Queue<string>(kept);
        while (queue.TryDequeue(out var file))
        {
            var backing = backingOf.TryGetValue(file, out var recorded) ? recorded : await ReadBackingFileAsync(file, cancellationToken).ConfigureAwait(false);
            if (backing is not null && kept.Add(backing))
            {
                queue.Enqueue(backing);
            }
        }

        return kept;
    }

    /// <summary>The full path of <paramref name="file"/>'s backing file from its qcow2 header, or null.</summary>
    private static async Task<string?> ReadBackingFileAsync(string file, CancellationToken cancellationToken)
    {
        try
        {
            var image = await Qcow2Image.OpenAsync(file, readOnly: true, cancellationToken).ConfigureAwait(false);
            await using (image.ConfigureAwait(false))
            {
                return image.BackingFileName is { } backing ? Path.GetFullPath(backing, Path.GetDirectoryName(file)!) : null;
            }
        }
        catch (Exception e) when (e is StorageException or IOException or UnauthorizedAccessException)
        {
            // Missing or damaged: verify reports it; what it builds on cannot be told, and the
            // files below it stay only if something else names them.
            return null;
        }
    }

    /// <summary>A checkpoint name of this client's: <c>tidemark.CHAIN.SEQUENCE</c> (<c>BackupRunner</c>).</summary>
    private static bool IsOwnCheckpoint(string name) => OwnCheckpoint().IsMatch(name);

    /// <summary>A temporary file of <see cref="DurableFile"/> for one of this client's files.</summary>
    private static bool IsOwnTemporary(string name)
    {
        if (!name.StartsWith('.') || !name.EndsWith(DurableFile.TempSuffix, StringComparison.Ordinal))
        {
            return false;
        }

        var target = name[1..^DurableFile.TempSuffix.Length];
        if (target == PendingFileName)
        {
            return true;
        }

        foreach (var suffix in (ReadOnlySpan<string>)[ManifestSuffix, DomainXmlSuffix, CheckpointXmlSuffix, ChainFileSuffix])
        {
            if (target.EndsWith(suffix, StringComparison.Ordinal) && IsOwnCheckpoint(target[..^suffix.Length]))
            {
                return true;
            }
        }

        return false;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\Atidemark\.[0-9a-z]+\.[0-9]+\z", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex OwnCheckpoint();

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
