using System.Globalization;
using System.Xml.Linq;
using Tidemark.Backup.Repository;
using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Backup.Run;

/// <summary>
/// Decides per disk whether the chain in the repository can go on with an incremental: the
/// disk's last backup must exist, its checkpoint must still exist on the host as the
/// repository recorded it (same creation time, a bitmap for the disk), and the disk must have
/// kept its size. Whatever breaks the chain makes that disk a full, with the reason. A bitmap
/// the host finds broken is only known when the backup begins (libvirt checks the bitmap
/// chain then, checkpoint-backup.md §6.6); <see cref="BackupRunner"/> retries that disk as a full.
/// </summary>
internal static class ChainDecision
{
    // virDomainCheckpointGetXMLDesc flag VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN.
    private const uint XmlNoDomain = 2;

    public static async Task<DiskPlan> DecideAsync(LibvirtClient client, RemoteDomain domain, BackupRepository repository, string disk, IReadOnlyList<BackupManifest> history, LevelRequest level, CancellationToken cancellationToken)
    {
        var previous = history.LastOrDefault(m => m.Disk(disk) is not null);
        var previousDisk = previous?.Disk(disk);
        var plan = new DiskPlan(disk, BackupLevel.Incremental, "", previousDisk, previous?.Checkpoint);
        if (level == LevelRequest.Full)
        {
            return plan.AsFull("full backup requested");
        }

        var broken = await WhyNotIncrementalAsync(client, domain, repository, disk, history, previous, previousDisk, cancellationToken).ConfigureAwait(false);
        if (broken is null)
        {
            return plan with { Reason = $"incremental since checkpoint '{previous!.Checkpoint}'" };
        }

        if (level == LevelRequest.Incremental)
        {
            throw new BackupException(BackupErrorReason.InvalidRequest, $"cannot back up disk '{disk}' incrementally: {broken}; use --level full or auto");
        }

        return plan.AsFull(broken);
    }

    private static async Task<string?> WhyNotIncrementalAsync(LibvirtClient client, RemoteDomain domain, BackupRepository repository, string disk, IReadOnlyList<BackupManifest> history, BackupManifest? previous, DiskManifest? previousDisk, CancellationToken cancellationToken)
    {
        if (previous is null || previousDisk is null)
        {
            return history.Count == 0 ? "no previous backup in the repository" : "disk added since the last backup (none of it in the repository)";
        }

        RemoteCheckpoint checkpoint;
        try
        {
            checkpoint = await client.LookupCheckpointByNameAsync(domain, previous.Checkpoint, 0, cancellationToken).ConfigureAwait(false);
        }
        catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomainCheckpoint)
        {
            return $"checkpoint '{previous.Checkpoint}' of the last backup no longer exists on the host (deleted)";
        }

        var hostXml = await client.GetCheckpointXmlAsync(checkpoint, XmlNoDomain, cancellationToken).ConfigureAwait(false);
        var recordedPath = repository.CheckpointXmlPath(previous.Domain, previous.Checkpoint);
        var recorded = File.Exists(recordedPath) ? await File.ReadAllTextAsync(recordedPath, cancellationToken).ConfigureAwait(false) : null;
        var host = CheckpointFacts.Parse(hostXml);
        if (recorded is null || host.CreationTime != CheckpointFacts.Parse(recorded).CreationTime)
        {
            return $"checkpoint '{previous.Checkpoint}' on the host was redefined differently from the one the repository recorded";
        }

        if (!host.BitmapDisks.Contains(disk))
        {
            return $"checkpoint '{previous.Checkpoint}' on the host has no bitmap for disk '{disk}'";
        }

        var info = await client.GetBlockInfoAsync(domain, disk, 0, cancellationToken).ConfigureAwait(false);
        if ((long)info.Capacity != previousDisk.VirtualSize)
        {
            return $"disk resized from {previousDisk.VirtualSize} to {info.Capacity} bytes since checkpoint '{previous.Checkpoint}'";
        }

        return null;
    }

    /// <summary>What the decision compares of a checkpoint document: its creation time and the disks it keeps a bitmap for.</summary>
    private sealed record CheckpointFacts(long? CreationTime, IReadOnlySet<string> BitmapDisks)
    {
        public static CheckpointFacts Parse(string xml)
        {
            var root = XDocument.Parse(xml).Root!;
            long? created = long.TryParse(root.Element("creationTime")?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var t) ? t : null;
            var disks = root.Element("disks")?.Elements("disk")
                .Where(d => (string?)d.Attribute("checkpoint") is null or "bitmap")
                .Select(d => (string?)d.Attribute("name"))
                .OfType<string>()
                .ToHashSet(StringComparer.Ordinal) ?? [];
            return new CheckpointFacts(created, disks);
        }
    }
}
