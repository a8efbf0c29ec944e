using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// Aligns a checkpoint's disks with a domain (spec §2.3, libvirt
/// <c>virDomainCheckpointAlignDisks</c>): one entry per domain disk, in domain order, names
/// rewritten to target devs, defaults filled in.
/// </summary>
public static class CheckpointAligner
{
    /// <summary>
    /// Aligns <paramref name="checkpoint"/> with <paramref name="domain"/> (for create: the VM's
    /// inactive definition; for redefine: the embedded domain).
    /// </summary>
    /// <exception cref="DocumentException">No domain, more disks than the domain has, a domain
    /// without disks, an unknown or repeated disk, or a checkpoint on an empty or read-only disk.</exception>
    public static CheckpointDefinition Align(CheckpointDefinition checkpoint, DomainDefinition? domain)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (domain is null)
        {
            throw new DocumentException(DocumentErrorReason.MissingDomain, "missing domain in checkpoint");
        }

        if (checkpoint.Disks.Count > domain.Disks.Count)
        {
            throw new DocumentException(DocumentErrorReason.TooManyDisks, "too many disk checkpoint requests for domain");
        }

        if (domain.Disks.Count == 0)
        {
            throw new DocumentException(DocumentErrorReason.DomainWithoutDisks, "domain must have at least one disk to perform checkpoints");
        }

        // Without <disks>, every writable disk with media gets a bitmap; with <disks>, the
        // disks left out get none.
        var unlistedType = checkpoint.Disks.Count == 0 ? CheckpointType.Bitmap : CheckpointType.No;
        var listed = new Dictionary<string, CheckpointDisk>(StringComparer.Ordinal);
        foreach (var disk in checkpoint.Disks)
        {
            var domainDisk = domain.DiskByName(disk.Name)
                ?? throw new DocumentException(DocumentErrorReason.NoSuchDisk, $"no disk named '{disk.Name}'");
            if (listed.ContainsKey(domainDisk.TargetDev))
            {
                throw new DocumentException(DocumentErrorReason.DiskSpecifiedTwice, $"disk '{disk.Name}' specified twice");
            }

            if ((domainDisk.IsEmpty || domainDisk.ReadOnly) && disk.Type != CheckpointType.No)
            {
                throw new DocumentException(DocumentErrorReason.DiskEmptyOrReadOnly, $"disk '{disk.Name}' is empty or readonly");
            }

            listed.Add(domainDisk.TargetDev, disk with { Name = domainDisk.TargetDev });
        }

        var aligned = domain.Disks
            .Select(d => listed.TryGetValue(d.TargetDev, out var disk)
                ? disk
                : new CheckpointDisk(d.TargetDev, d.IsEmpty || d.ReadOnly ? CheckpointType.No : unlistedType))
            .ToList();
        return AssignBitmapNames(checkpoint with { Disks = aligned });
    }

    /// <summary>
    /// Gives every bitmap disk without a bitmap name the checkpoint's name (spec §2.3 step 6);
    /// the only alignment a redefinition without a domain gets.
    /// </summary>
    public static CheckpointDefinition AssignBitmapNames(CheckpointDefinition checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var disks = checkpoint.Disks
            .Select(d => d.Type == CheckpointType.Bitmap && d.Bitmap is null ? d with { Bitmap = checkpoint.Name } : d)
            .ToList();
        return checkpoint with { Disks = disks };
    }
}
