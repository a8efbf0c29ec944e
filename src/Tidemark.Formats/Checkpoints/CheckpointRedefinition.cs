namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// The checks of a redefinition (spec §2.5) that need no checkpoint tree: the document names
/// itself as parent, or embeds a domain with another UUID than the VM's. The tree checks
/// (missing parent, cycle) belong to the engine's checkpoint list.
/// </summary>
public static class CheckpointRedefinition
{
    /// <summary>Refuses a checkpoint whose parent is itself (libvirt checks this first).</summary>
    /// <exception cref="DocumentException">"cannot set moment %s as its own parent".</exception>
    public static void CheckNotOwnParent(CheckpointDefinition checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (checkpoint.Parent is not null && checkpoint.Parent == checkpoint.Name)
        {
            throw new DocumentException(DocumentErrorReason.OwnParent, $"cannot set moment {checkpoint.Name} as its own parent");
        }
    }

    /// <summary>
    /// Refuses an embedded domain whose UUID is not <paramref name="domainUuid"/>, the VM's; a
    /// domain written without a UUID counts as the nil UUID. Nothing to check without an embedded domain.
    /// </summary>
    /// <exception cref="DocumentException">"definition for checkpoint %s must use uuid %s".</exception>
    public static void CheckDomainUuid(CheckpointDefinition checkpoint, Guid domainUuid)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (checkpoint.Domain is null)
        {
            return;
        }

        // The schema admits the bare 32-digit and the dashed form, in either case.
        var embedded = checkpoint.Domain.Uuid is { } text && Guid.TryParse(text, out var parsed) ? parsed : Guid.Empty;
        if (embedded != domainUuid)
        {
            throw new DocumentException(
                DocumentErrorReason.WrongDomainUuid,
                $"definition for checkpoint {checkpoint.Name} must use uuid {domainUuid:D}");
        }
    }
}
