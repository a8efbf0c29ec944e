using Tidemark.Formats.Domains;

namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// A <c>&lt;domaincheckpoint&gt;</c> document (spec §2). Parsed without any domain by
/// <see cref="CheckpointParser"/>; aligned with a domain by <see cref="CheckpointAligner"/>;
/// written by <see cref="CheckpointFormatter"/>.
/// </summary>
/// <param name="Name">The checkpoint name; null on create input until the creation defaults apply.</param>
/// <param name="Description">Free text.</param>
/// <param name="Parent">The parent checkpoint's name; null for a root.</param>
/// <param name="CreationTime">Unix seconds; 0 when not known (then not written).</param>
/// <param name="Disks">Per-disk settings, in document order (after alignment: domain disk order).</param>
/// <param name="Domain">The inactive domain definition at checkpoint time (redefine input, and stored metadata).</param>
public sealed record CheckpointDefinition(
    string? Name,
    string? Description,
    string? Parent,
    long CreationTime,
    IReadOnlyList<CheckpointDisk> Disks,
    DomainDefinition? Domain = null)
{
    /// <summary>
    /// The create-mode post-parse step (spec §2.2): the creation time becomes
    /// <paramref name="now"/>, and a checkpoint without a name is named after it in decimal.
    /// </summary>
    public CheckpointDefinition WithCreationDefaults(long now)
        => this with
        {
            CreationTime = now,
            Name = Name ?? now.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
}

/// <summary>One <c>&lt;disk&gt;</c> of a checkpoint.</summary>
/// <param name="Name">Target dev, or before alignment possibly an absolute source path.</param>
/// <param name="Type">Whether the disk gets a bitmap (missing <c>checkpoint=</c> means bitmap).</param>
/// <param name="Bitmap">The bitmap name; null until alignment gives it the checkpoint's name.</param>
/// <param name="Size">Output only: bytes dirtied since the checkpoint, when computed (written with <see cref="CheckpointFormatFlags.Size"/>).</param>
public sealed record CheckpointDisk(string Name, CheckpointType Type, string? Bitmap = null, ulong? Size = null);

/// <summary>A disk's part in a checkpoint (<c>checkpoint=</c>).</summary>
public enum CheckpointType
{
    /// <summary><c>no</c>: the disk is not tracked.</summary>
    No,

    /// <summary><c>bitmap</c>: the disk gets a persistent dirty bitmap.</summary>
    Bitmap,
}

/// <summary>The XML names of <see cref="CheckpointType"/>, in one table.</summary>
public static class CheckpointTypeNames
{
    internal static readonly Xml.XmlEnumTable<CheckpointType> Table = new(
        (CheckpointType.No, "no"),
        (CheckpointType.Bitmap, "bitmap"));

    /// <summary>The XML name of <paramref name="type"/>.</summary>
    public static string Of(CheckpointType type) => Table.ToXml(type);
}

/// <summary>How a checkpoint document is read (spec §2.2).</summary>
public enum CheckpointParseMode
{
    /// <summary>A new checkpoint: only name, description and disks are read.</summary>
    Create,

    /// <summary>Existing metadata: name and creationTime are required; parent and domain are read too.</summary>
    Redefine,
}

/// <summary>Format flags (libvirt <c>VIR_DOMAIN_CHECKPOINT_XML_*</c>, spec §2.4).</summary>
[Flags]
public enum CheckpointFormatFlags
{
    None = 0,

    /// <summary>Include secure data of the embedded domain.</summary>
    Secure = 1 << 0,

    /// <summary>Leave out the embedded domain.</summary>
    NoDomain = 1 << 1,

    /// <summary>Write each disk's computed <c>size</c>.</summary>
    Size = 1 << 2,
}
