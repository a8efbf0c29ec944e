using System.Text.RegularExpressions;
using Tidemark.Backup.Repository;
using Tidemark.Formats.Domains;
using Tidemark.Nbd;
using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Storage;

namespace Tidemark.Backup.Run;

/// <summary>
/// <c>backup run</c>: one pull backup of a domain into the repository, through libvirt's API
/// only (Tidemark's daemon or a real libvirtd).
/// </summary>
/// <remarks>
/// Order, and what each failure leaves:
/// <list type="number">
/// <item>Lock the repository; connect and check that the domain's directory holds only this
/// domain's backups (name and uuid); finish a fold (<c>backup prune</c>) a killed command left;
/// remove the leftovers of interrupted runs; undo a backup the last run left pending on the
/// host (job ended, checkpoint deleted). A run that fails having stored nothing removes the
/// directories and lock file it created (<see cref="RepositoryFootprint"/>).</item>
/// <item>Decide each disk's level (<see cref="ChainDecision"/>), then record the backup as
/// pending and begin it with its new checkpoint in the same call (libvirt makes the two
/// atomic). A disk whose bitmap the host finds broken is retried as a full.</item>
/// <item>Copy the disks into new chain files, then the domain and checkpoint XML, then the
/// manifest: the backup is complete only from that rename on.</item>
/// <item>In every case end the job. After a failure, delete the checkpoint just created, so
/// the host keeps no checkpoint the repository has no backup for; then forget the pending
/// record. A client killed before this point leaves the pending record for step 1.</item>
/// </list>
/// </remarks>
public static partial class BackupRunner
{
    /// <summary>Runs one backup; returns its manifest.</summary>
    /// <exception cref="BackupException">The request cannot be met, the repository is locked, or the host failed the job.</exception>
    /// <exception cref="LibvirtError">The host refused a call.</exception>
    public static async Task<BackupManifest> RunAsync(BackupRunOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var repository = options.Repository;
        var report = options.Report ?? (_ => { });
        var footprint = RepositoryFootprint.Before(repository, options.Domain);
        using var repositoryLock = RepositoryLock.Acquire(repository.Root);
        try
        {
            return await RunLockedAsync(options, report, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (!File.Exists(repository.PendingPath(options.Domain)))
        {
            // Nothing of this run is stored (a backup exists once its manifest does, and a
            // failed run deleted its files): a first run against an unreachable host or an
            // unknown domain leaves no empty repository. A pending record stays for the next run.
            footprint.Remove();
            throw;
        }
    }

    private static async Task<BackupManifest> RunLockedAsync(BackupRunOptions options, Action<string> report, CancellationToken cancellationToken)
    {
        var repository = options.Repository;
        var client = await LibvirtClient.ConnectAsync(options.ConnectionUri, null, cancellationToken).ConfigureAwait(false);
        await using (client.ConfigureAwait(false))
        {
            var domain = await client.LookupDomainByNameAsync(options.Domain, cancellationToken).ConfigureAwait(false);

            // Before anything in the domain's directory is changed: it must be this domain's.
            repository.RequireDomainUuid(options.Domain, domain.Uuid, await repository.ReadManifestsAsync(options.Domain, cancellationToken).ConfigureAwait(false));
            await Prune.ChainFold.FinishPendingAsync(repository, options.Domain, report, cancellationToken).ConfigureAwait(false);
            foreach (var leftover in await repository.RemoveLeftoversAsync(options.Domain, cancellationToken).ConfigureAwait(false))
            {
                report($"removed leftover of an interrupted backup: {leftover}");
            }

            await RepairPendingAsync(client, domain, repository, report, cancellationToken).ConfigureAwait(false);
            var domainXml = await client.GetDomainXmlAsync(domain, 0, cancellationToken).ConfigureAwait(false);
            var definition = DomainParser.Parse(domainXml, $"domain '{options.Domain}'", cancellationToken);
            var (selected, others) = SelectDisks(definition, options.Disks);
            var history = await repository.ReadManifestsAsync(options.Domain, cancellationToken).ConfigureAwait(false);
            var plans = new List<DiskPlan>();
            foreach (var disk in selected)
            {
                plans.Add(await ChainDecision.DecideAsync(client, domain, repository, disk, history, options.Level, cancellationToken).ConfigureAwait(false));
            }

            var manifest = await BackupAsync(client, domain, domainXml, plans, others, history, options, report, cancellationToken).ConfigureAwait(false);
            await RetireCheckpointsAsync(client, domain, repository, history.Append(manifest).ToList(), report, cancellationToken).ConfigureAwait(false);
            return manifest;
        }
    }

    /// <summary>
    /// Deletes from the host the checkpoints of this repository's backups that no disk's chain
    /// continues from (only each disk's latest backup is a base), so the host does not keep a
    /// bitmap recording every guest write for each backup ever taken. Checkpoints the
    /// repository does not know are never touched. The job has ended: libvirt deletes no
    /// checkpoint while a backup runs.
    /// </summary>
    private static async Task RetireCheckpointsAsync(LibvirtClient client, RemoteDomain domain, BackupRepository repository, IReadOnlyList<BackupManifest> history, Action<string> report, CancellationToken cancellationToken)
    {
        var bases = history.SelectMany(m => m.Disks.Select(d => (Disk: d.Name, m.Checkpoint)))
            .GroupBy(p => p.Disk)
            .Select(g => g.Last().Checkpoint)
            .ToHashSet(StringComparer.Ordinal);
        var known = history.Select(m => m.Checkpoint).ToHashSet(StringComparer.Ordinal);
        foreach (var checkpoint in await client.ListAllCheckpointsAsync(domain, 0, cancellationToken).ConfigureAwait(false))
        {
            if (!known.Contains(checkpoint.Name) || bases.Contains(checkpoint.Name))
            {
                continue;
            }

            try
            {
                await DeleteCheckpointAsync(client, domain, checkpoint, report, cancellationToken).ConfigureAwait(false);
                report($"deleted checkpoint {checkpoint.Name} from the host: no disk's chain continues from it");
            }
            catch (LibvirtError e)
            {
                // The backup is complete; a checkpoint left behind costs only its bitmap.
                report($"could not delete checkpoint {checkpoint.Name} from the host: {e.Message}");
            }
        }
    }

    /// <summary>
    /// Deletes a checkpoint with its bitmaps. libvirt deletes none of a checkpoint's bitmaps
    /// when one disk's is gone ("bitmap '…' not found in backing chain of 'vdb'",
    /// libvirt-checkpoint-backup.md §6.4), which would leave the checkpoint, and the other
    /// disks' bitmaps recording every guest write, for good. So that disk is first redefined
    /// out of the checkpoint (<c>checkpoint='no'</c>; a redefine touches no bitmap, §2.5).
    /// </summary>
    private static async Task DeleteCheckpointAsync(LibvirtClient client, RemoteDomain domain, RemoteCheckpoint checkpoint, Action<string> report, CancellationToken cancellationToken)
    {
        const uint Redefine = 1;
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await client.DeleteCheckpointAsync(checkpoint, 0, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (LibvirtError e) when (attempt < 16 && BitmapNotInChain().Match(e.Message) is { Success: true } match)
            {
                var disk = match.Groups[1].Value;
                var xml = System.Xml.Linq.XDocument.Parse(await client.GetCheckpointXmlAsync(checkpoint, 0, cancellationToken).ConfigureAwait(false));
                var entry = xml.Root?.Element("disks")?.Elements("disk").FirstOrDefault(d => (string?)d.Attribute("name") == disk);
                if (entry is null)
                {
                    throw;
                }

                entry.ReplaceAttributes(new System.Xml.Linq.XAttribute("name", disk), new System.Xml.Linq.XAttribute("checkpoint", "no"));
                await client.CreateCheckpointAsync(domain, xml.ToString(), Redefine, cancellationToken).ConfigureAwait(false);
                report($"checkpoint {checkpoint.Name} has no bitmap left on disk '{disk}': redefined without that disk to delete it");
            }
        }
    }

    private static async Task<BackupManifest> BackupAsync(LibvirtClient client, RemoteDomain domain, string domainXml, List<DiskPlan> plans, IReadOnlyList<string> others, IReadOnlyList<BackupManifest> history, BackupRunOptions options, Action<string> report, CancellationToken cancellationToken)
    {
        var repository = options.Repository;
        var work = Path.Combine(Path.GetFullPath(options.WorkDirectory ?? Path.GetTempPath()), "tmb-" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 4)));
        var socket = Path.Combine(work, "nbd.sock");

        // Said before anything is asked of the host, which would refuse it only once the job's
        // checkpoint is on its way.
        if (!UnixSocketPath.Fits(socket))
        {
            throw new BackupException(BackupErrorReason.InvalidRequest, $"the pull backup's socket '{socket}' would be over the {UnixSocketPath.MaxBytes} bytes of a unix socket's path: its work directory is too deep (TMPDIR, or the run's WorkDirectory, sets it)");
        }

        CreateWorkDirectory(work);
        var started = DateTimeOffset.UtcNow;
        RemoteCheckpoint? created = null;
        var jobBegun = false;
        var succeeded = false;

        // False while the host may hold a job or checkpoint of this run that is not yet undone:
        // the pending record then stays for the next run.
        var hostClean = true;
        try
        {
            var (chain, sequence) = NextPoint(plans, history);
            var name = $"tidemark.{chain}.{sequence}";
            await repository.WritePendingAsync(new PendingBackup(options.Domain, name, socket, work, started), cancellationToken).ConfigureAwait(false);
            hostClean = false;
            try
            {
                plans = await BeginAsync(client, domain, name, socket, work, plans, others, report, cancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError)
            {
                // Refused: libvirt began nothing and created no checkpoint (one transaction, §6.7).
                hostClean = true;
                throw;
            }

            jobBegun = true;
            created = await client.LookupCheckpointByNameAsync(domain, name, 0, cancellationToken).ConfigureAwait(false);
            foreach (var plan in plans)
            {
                report($"{plan.Disk}: {(plan.Level == BackupLevel.Full ? "full" : "incremental")} ({plan.Reason})");
            }

            var disks = new DiskManifest[plans.Count];
            try
            {
                await Parallel.ForEachAsync(
                    Enumerable.Range(0, plans.Count),
                    new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.ParallelDisks), CancellationToken = cancellationToken },
                    async (i, token) => disks[i] = await CopyDiskAsync(repository, options, plans[i], name, socket, report, token).ConfigureAwait(false)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NbdException or IOException or System.Net.Sockets.SocketException && !cancellationToken.IsCancellationRequested)
            {
                // The export went away under the copy. Only the host can tell why.
                throw await StoppedDomain.ExplainAsync(client, domain, history, e).ConfigureAwait(false) ?? e;
            }

            var checkpointXml = await client.GetCheckpointXmlAsync(created, 0, cancellationToken).ConfigureAwait(false);
            await BackupRepository.WriteTextAsync(repository.DomainXmlPath(options.Domain, name), domainXml, cancellationToken).ConfigureAwait(false);
            await BackupRepository.WriteTextAsync(repository.CheckpointXmlPath(options.Domain, name), checkpointXml, cancellationToken).ConfigureAwait(false);
            var manifest = new BackupManifest
            {
                Domain = options.Domain,
                DomainUuid = domain.Uuid.ToString(),
                Checkpoint = name,
                Chain = chain,
                Sequence = sequence,
                Parent = history.Count > 0 ? history[^1].Checkpoint : null,
                Started = started,
                Completed = DateTimeOffset.UtcNow,
                Compression = options.Compress ? "zstd" : null,
                Disks = disks,
            };
            await repository.WriteManifestAsync(manifest, cancellationToken).ConfigureAwait(false);
            succeeded = true;
            report($"backup {name} of domain '{options.Domain}' complete: {disks.Length} disk(s), {disks.Sum(d => d.DataBytes)} bytes of data");
            return manifest;
        }
        finally
        {
            // Cleanup runs even when the caller cancelled: it must not leave the job or the
            // checkpoint behind, so it does not take the cancelled token.
            if (jobBegun)
            {
                try
                {
                    hostClean = await EndAsync(client, domain, created, succeeded, report).ConfigureAwait(false);
                }
                catch (Exception e) when (e is LibvirtError or RemoteProtocolException or BackupException or OperationCanceledException)
                {
                    report($"could not end the backup job on the host ({e.Message}); the next run ends it and deletes its checkpoint");
                }
            }

            // A complete backup's checkpoint must stay: its manifest protects it from repair.
            if (hostClean || succeeded)
            {
                repository.DeletePending(options.Domain);
                TryDeleteDirectory(work);
            }
        }
    }

    /// <summary>Ends the job and, after a failure, deletes its checkpoint; false when the checkpoint stays on the host for the next run.</summary>
    private static async Task<bool> EndAsync(LibvirtClient client, RemoteDomain domain, RemoteCheckpoint? created, bool succeeded, Action<string> report)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await PullJob.EndAsync(client, domain, timeout.Token).ConfigureAwait(false);
        if (!succeeded && created is not null)
        {
            try
            {
                await client.DeleteCheckpointAsync(created, 0, timeout.Token).ConfigureAwait(false);
            }
            catch (LibvirtError e)
            {
                // libvirt deletes no checkpoint of an inactive domain ("cannot delete checkpoint
                // for inactive domain"): after the domain stopped mid-backup the job is over,
                // but its checkpoint stays, with the pending record, until the next run.
                report($"the backup job has ended, but its checkpoint {created.Name} could not be deleted from the host ({e.Message}); the next run deletes it");
                return false;
            }

            report($"cleaned up after the failed backup: its checkpoint {created.Name} deleted from the host");
        }

        return true;
    }

    private static async Task<List<DiskPlan>> BeginAsync(LibvirtClient client, RemoteDomain domain, string name, string socket, string work, List<DiskPlan> plans, IReadOnlyList<string> others, Action<string> report, CancellationToken cancellationToken)
    {
        while (true)
        {
            var backupXml = PullBackupDocuments.BackupXml(socket, work, plans, others);
            var checkpointXml = PullBackupDocuments.CheckpointXml(name, plans, others);
            try
            {
                await client.BeginBackupAsync(domain, backupXml, checkpointXml, 0, cancellationToken).ConfigureAwait(false);
                return plans;
            }
            catch (LibvirtError e) when (e.Code is VirErrorNumber.CheckpointInconsistent or VirErrorNumber.NoDomainCheckpoint
                && DiskInMessage().Match(e.Message) is { Success: true } match
                && plans.FindIndex(p => p.Disk == match.Groups[1].Value && p.Level == BackupLevel.Incremental) is var index and >= 0)
            {
                // libvirt checks each disk's bitmap chain only here (checkpoint-backup.md §6.7
                // step 9) and names the disk: that disk starts a new chain, the others go on.
                // A persistent bitmap reaches the qcow2 file only when the image is closed, so a
                // host that died (daemon or QEMU killed) has none, or one left IN_USE.
                var why = e.Code == VirErrorNumber.CheckpointInconsistent ? "bitmap broken on the host" : "checkpoint missing on the host";
                report($"{plans[index].Disk}: {why} ({e.Message}); the writes since that checkpoint are not known (the host stopped without storing its bitmap, or the bitmap was removed): retrying it as a full");
                plans[index] = plans[index].AsFull($"{why}: {e.Message}");
            }
        }
    }

    private static async Task<DiskManifest> CopyDiskAsync(BackupRepository repository, BackupRunOptions options, DiskPlan plan, string checkpoint, string socket, Action<string> report, CancellationToken cancellationToken)
    {
        var relative = BackupRepository.ChainFileName(plan.Disk, checkpoint);
        var backing = plan.Level == BackupLevel.Incremental ? Path.GetFileName(plan.Previous!.File) : null;
        var result = await DiskTransfer.RunAsync(new DiskTransferRequest
        {
            Disk = plan.Disk,
            Socket = socket,
            Level = plan.Level,
            Target = repository.PathOf(options.Domain, relative),
            BackingFile = backing,
            Compress = options.Compress,
            Connections = Math.Max(1, options.ConnectionsPerDisk),
            Planned = options.Progress is { } planned ? bytes => planned.Planned(plan.Disk, bytes) : null,
        }, options.Progress is { } progress ? new CopiedBytes(progress, plan.Disk) : null, cancellationToken).ConfigureAwait(false);
        report($"{plan.Disk}: {result.DataBytes} of {result.VirtualSize} bytes copied into {relative}");
        return new DiskManifest
        {
            Name = plan.Disk,
            Level = plan.Level,
            Reason = plan.Reason,
            Base = plan.Level == BackupLevel.Incremental ? plan.PreviousCheckpoint : null,
            File = relative,
            BackingFile = backing,
            VirtualSize = result.VirtualSize,
            DataBytes = result.DataBytes,
            Extents = result.Extents,
        };
    }

    /// <summary>
    /// Undoes what a run that died left on the host: its job, if it still serves on the
    /// recorded socket (a job of someone else's is left alone), and its checkpoint.
    /// </summary>
    private static async Task RepairPendingAsync(LibvirtClient client, RemoteDomain domain, BackupRepository repository, Action<string> report, CancellationToken cancellationToken)
    {
        var pending = await repository.ReadPendingAsync(domain.Name, cancellationToken).ConfigureAwait(false);
        if (pending is null)
        {
            return;
        }

        if (await PullJob.BackupXmlAsync(client, domain, cancellationToken).ConfigureAwait(false) is { } running && running.Contains(pending.Socket, StringComparison.Ordinal))
        {
            await PullJob.EndAsync(client, domain, cancellationToken).ConfigureAwait(false);
            report($"ended the backup job an interrupted run left on domain '{domain.Name}'");
        }

        // A backup that completed keeps its checkpoint; only its job's end was lost.
        if (!File.Exists(repository.ManifestPath(domain.Name, pending.Checkpoint)))
        {
            try
            {
                // A host killed before it stored the checkpoint's bitmaps has the checkpoint
                // without them: deleted the way older checkpoints whose bitmap is gone are.
                var checkpoint = await client.LookupCheckpointByNameAsync(domain, pending.Checkpoint, 0, cancellationToken).ConfigureAwait(false);
                await DeleteCheckpointAsync(client, domain, checkpoint, report, cancellationToken).ConfigureAwait(false);
                report($"deleted checkpoint {pending.Checkpoint} of an interrupted backup from the host");
            }
            catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomainCheckpoint)
            {
                // The interrupted run never created it, or already deleted it.
            }
        }

        TryDeleteDirectory(pending.WorkDirectory);
        repository.DeletePending(domain.Name);
    }

    /// <summary>The chain and sequence of the next backup: a new chain when every disk is a full.</summary>
    private static (string Chain, int Sequence) NextPoint(IReadOnlyList<DiskPlan> plans, IReadOnlyList<BackupManifest> history)
    {
        if (history.Count == 0 || plans.All(p => p.Level == BackupLevel.Full))
        {
            return (Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 4)), 0);
        }

        return (history[^1].Chain, history[^1].Sequence + 1);
    }

    /// <summary>
    /// The disks to back up (the domain's qcow2 disks, or those asked for) and the rest, which
    /// the job and the checkpoint list as left out. Libvirt backs up and checkpoints only qcow2
    /// disks with media; a read-only or CD-ROM disk has nothing to back up.
    /// </summary>
    private static (IReadOnlyList<string> Selected, IReadOnlyList<string> Others) SelectDisks(DomainDefinition definition, IReadOnlyList<string> asked)
    {
        var eligible = definition.Disks
            .Where(d => d.Device == DiskDevice.Disk && !d.ReadOnly && !d.IsEmpty && d.DriverType == "qcow2")
            .Select(d => d.TargetDev)
            .ToList();
        foreach (var name in asked)
        {
            if (definition.DiskByTarget(name) is null)
            {
                throw new BackupException(BackupErrorReason.NotFound, $"no disk named '{name}' in domain '{definition.Name}'");
            }

            if (!eligible.Contains(name))
            {
                throw new BackupException(BackupErrorReason.InvalidRequest, $"disk '{name}' of domain '{definition.Name}' cannot be backed up: only writable qcow2 disks with media can");
            }
        }

        var selected = asked.Count == 0 ? eligible : eligible.Where(asked.Contains).ToList();
        if (selected.Count == 0)
        {
            throw new BackupException(BackupErrorReason.InvalidRequest, $"domain '{definition.Name}' has no qcow2 disk to back up");
        }

        var others = definition.Disks.Select(d => d.TargetDev).Where(d => !selected.Contains(d)).ToList();
        return (selected, others);
    }

    /// <summary>
    /// The job's directory, where QEMU (not libvirtd) binds the export's unix socket. A system
    /// libvirtd runs QEMU as its own user (<c>libvirt-qemu</c> on Debian), which cannot bind in
    /// a directory only its root owner may write ("Failed to bind socket ... Permission
    /// denied" from nbd-server-start). Others get write and search but not read: QEMU can make
    /// its socket, and nobody can list what is inside. libvirtd itself creates the scratch files
    /// and hands them to QEMU's user (libvirt-checkpoint-backup.md §3.1, §6.9).
    /// </summary>
    private static void CreateWorkDirectory(string path)
    {
        Directory.CreateDirectory(path);
        if (!OperatingSystem.IsWindows())
        {
            // Set after creation: mkdir's mode passes through the umask, chmod's does not.
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        }
    }

    private static void TryDeleteDirectory(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
            // A scratch file the host still holds; the temporary directory is the system's to clean.
        }
        catch (UnauthorizedAccessException)
        {
            // Created by a host running as another user.
        }
    }

    /// <summary>One disk's copied bytes, passed on at once on the copying thread (<see cref="Progress{T}"/> would post them to a synchronization context).</summary>
    private sealed class CopiedBytes(IBackupProgress progress, string disk) : IProgress<long>
    {
        public void Report(long value) => progress.Copied(disk, value);
    }

    [GeneratedRegex("not found in backing chain of '([^']+)'")]
    private static partial Regex BitmapNotInChain();

    [GeneratedRegex("for disk '([^']+)'")]
    private static partial Regex DiskInMessage();
}
