using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;
using Tidemark.Backup.Verify;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Backup.Restore;

/// <summary>What <see cref="DiskRestore"/> restores, and where.</summary>
public sealed record RestoreOptions
{
    public required BackupRepository Repository { get; init; }

    public required string Domain { get; init; }

    /// <summary>The backup to restore; the latest when null.</summary>
    public string? Checkpoint { get; init; }

    /// <summary>Disks to restore; every disk of the backup when empty.</summary>
    public IReadOnlyList<string> Disks { get; init; } = [];

    /// <summary>
    /// A file (one disk) or a directory (where each disk becomes <c>DISK.raw</c> or
    /// <c>DISK.qcow2</c>); an existing directory is always taken as one.
    /// </summary>
    public required string Output { get; init; }

    public ImageFormat Format { get; init; } = ImageFormat.Raw;

    /// <summary>Replace outputs that exist.</summary>
    public bool Force { get; init; }

    /// <summary>
    /// Skip the check of the chain files against their manifests' checksums before the copy
    /// (faster: the chain is read once instead of twice; a damaged chain then restores wrong data).
    /// </summary>
    public bool SkipVerify { get; init; }

    /// <summary>Also define the domain, with the restored disks, on the host at this libvirt URI.</summary>
    public string? DefineUri { get; init; }

    /// <summary>The name to define it under; the backup's domain name when null.</summary>
    public string? DefineName { get; init; }

    /// <summary>
    /// Receives each disk's bytes to read (those its chain holds data for) before its copy, then
    /// the bytes of each read, for a progress display; disks are restored in parallel.
    /// </summary>
    public IBackupProgress? Progress { get; init; }
}

/// <summary>One disk written by a restore.</summary>
public sealed record RestoredDisk(string Disk, string Path, long VirtualSize);

/// <summary>
/// Restores disks exactly as they were at a backup: the disk's chain file at that point is
/// opened with its backing chain (the older files of the chain) and copied sparsely, so holes
/// and zeroed or trimmed areas stay holes (raw) or unallocated (qcow2). Each output is written
/// under a temporary name and renamed when complete; disks are restored in parallel. With
/// <see cref="RestoreOptions.DefineUri"/> the domain is then defined on that host
/// (<see cref="RestoredDomainDefinition"/>); a name the host already uses is refused first.
/// </summary>
public static class DiskRestore
{
    /// <exception cref="BackupException">No such backup or disk, an output exists without <see cref="RestoreOptions.Force"/>, or a chain file fails its manifest's checks.</exception>
    /// <exception cref="StorageException">A chain file is damaged.</exception>
    public static async Task<IReadOnlyList<RestoredDisk>> RunAsync(RestoreOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var (manifest, _) = await options.Repository.FindAsync(options.Domain, options.Checkpoint, cancellationToken).ConfigureAwait(false);
        var disks = options.Disks.Count == 0 ? manifest.Disks : options.Disks.Select(name => manifest.Disk(name)
            ?? throw new BackupException(BackupErrorReason.NotFound, $"no disk named '{name}' in backup {manifest.Checkpoint} of domain '{options.Domain}'")).ToList();
        var toDirectory = Directory.Exists(options.Output) || disks.Count > 1 || Path.EndsInDirectorySeparator(options.Output);
        var extension = options.Format == ImageFormat.Raw ? ".raw" : ".qcow2";
        var targets = disks.Select(d => (Disk: d, Path: Path.GetFullPath(toDirectory ? Path.Combine(options.Output, d.Name + extension) : options.Output))).ToList();
        foreach (var (_, path) in targets)
        {
            if (File.Exists(path) && !options.Force)
            {
                throw new BackupException(BackupErrorReason.OutputExists, $"output '{path}' exists; use --force to replace it");
            }
        }

        // A chain file damaged since its backup (a flipped bit, a truncation) still opens and
        // reads: only its checksums tell. Restoring it would hand back a wrong disk with no error.
        // Data that fails its checksum refuses the restore; a manifest's own inconsistency (one
        // lost from the middle of a chain) does not change what the chain files hold. While a
        // fold is pending its manifests are being rewritten and cannot judge the data: the next
        // prune or verify finishes it.
        if (!options.SkipVerify && !Prune.ChainFold.IsPending(options.Repository, options.Domain))
        {
            var check = await RepositoryVerifier.CheckPointAsync(options.Repository, options.Domain, manifest.Checkpoint, cancellationToken).ConfigureAwait(false);
            var damaged = check with { Findings = [.. check.Findings.Where(f => f.Offset is not null)] };
            if (!damaged.Passed)
            {
                throw RepositoryVerifier.Damaged(damaged, $"backup {manifest.Checkpoint} of domain '{options.Domain}' is damaged; nothing was restored");
            }
        }

        if (options.DefineUri is { } uri)
        {
            await RestoredDomainDefinition.CheckNameFreeAsync(uri, options.DefineName ?? options.Domain, cancellationToken).ConfigureAwait(false);
        }

        var createdDirectory = toDirectory && !Directory.Exists(options.Output);
        if (toDirectory)
        {
            Directory.CreateDirectory(options.Output);
        }

        var restored = new RestoredDisk[targets.Count];
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, targets.Count), cancellationToken, async (i, token) =>
            {
                var (disk, path) = targets[i];
                await RestoreDiskAsync(options.Repository.PathOf(options.Domain, disk.File), path, options.Format, disk.Name, options.Progress, token).ConfigureAwait(false);
                restored[i] = new RestoredDisk(disk.Name, path, disk.VirtualSize);
            }).ConfigureAwait(false);
        }
        catch
        {
            // Interrupted (SIGINT, SIGTERM) or failed: a disk already renamed into place is
            // complete on its own but not the restore asked for, and the directory made for the
            // disks would look like one; both go. The disk being copied was only a temporary file.
            RemoveOutputs(restored, createdDirectory ? options.Output : null);
            throw;
        }
        if (options.DefineUri is { } host)
        {
            await RestoredDomainDefinition.DefineAsync(options.Repository, manifest, restored, options.Format, host, options.DefineName ?? options.Domain, cancellationToken).ConfigureAwait(false);
        }

        return restored;
    }

    private static void RemoveOutputs(RestoredDisk?[] restored, string? createdDirectory)
    {
        foreach (var disk in restored.OfType<RestoredDisk>())
        {
            File.Delete(disk.Path);
        }

        try
        {
            if (createdDirectory is not null && !Directory.EnumerateFileSystemEntries(createdDirectory).Any())
            {
                Directory.Delete(createdDirectory);
            }
        }
        catch (IOException)
        {
            // Something else was put in it meanwhile: it stays.
        }
    }

    private static async Task RestoreDiskAsync(string chainFile, string output, ImageFormat format, string disk, IBackupProgress? progress, CancellationToken cancellationToken)
    {
        var temp = DurableFile.TempPath(output);
        try
        {
            var source = await Qcow2Image.OpenAsync(chainFile, readOnly: true, cancellationToken).ConfigureAwait(false);
            await using (source.ConfigureAwait(false))
            {
                IBlockImage reading = source;
                if (progress is not null)
                {
                    progress.Planned(disk, await CountedReads.DataBytesAsync(source, cancellationToken).ConfigureAwait(false));
                    reading = new CountedReads(source, bytes => progress.Copied(disk, bytes));
                }

                IBlockImage target = format == ImageFormat.Raw
                    ? RawImage.Create(temp, source.VirtualSize)
                    : await Qcow2Image.CreateAsync(temp, new Qcow2CreateOptions { Size = source.VirtualSize }, cancellationToken).ConfigureAwait(false);

                // The output is fsynced before it is renamed into place: stream it to the disk meanwhile.
                switch (target)
                {
                    case RawImage raw:
                        raw.WriteBehind = true;
                        break;
                    case Qcow2Image qcow2:
                        qcow2.WriteBehind = true;
                        break;
                }

                await using (target.ConfigureAwait(false))
                {
                    await SparseCopy.CopyAsync(reading, target, compress: false, cancellationToken).ConfigureAwait(false);
                    await target.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            DurableFile.Commit(temp, output);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
