using System.Text.Json.Serialization;

namespace Tidemark.Backup.Repository;

/// <summary>
/// What one backup holds: written last, and atomically, so a backup exists in the repository
/// exactly when its manifest does (<c>DOMAIN/CHECKPOINT.json</c>). Files a manifest does not
/// name are leftovers of an interrupted run.
/// </summary>
public sealed record BackupManifest
{
    /// <summary>The manifest layout; readers refuse a newer one.</summary>
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    public required string Domain { get; init; }

    public string? DomainUuid { get; init; }

    /// <summary>The checkpoint the backup created on the host: <c>tidemark.CHAIN.SEQUENCE</c>.</summary>
    public required string Checkpoint { get; init; }

    /// <summary>The chain identifier: a new one whenever every disk of the backup is full.</summary>
    public required string Chain { get; init; }

    public required int Sequence { get; init; }

    /// <summary>The repository's previous backup of this domain, if any.</summary>
    public string? Parent { get; init; }

    public required DateTimeOffset Started { get; init; }

    public required DateTimeOffset Completed { get; init; }

    /// <summary>"zstd" when the chain files hold compressed clusters.</summary>
    public string? Compression { get; init; }

    public required IReadOnlyList<DiskManifest> Disks { get; init; }

    /// <summary>The disk named <paramref name="name"/>, or null.</summary>
    public DiskManifest? Disk(string name) => Disks.FirstOrDefault(d => d.Name == name);
}

/// <summary>One disk of a backup: its chain file and what was copied into it.</summary>
public sealed record DiskManifest
{
    /// <summary>The disk target (<c>vda</c>).</summary>
    public required string Name { get; init; }

    public required BackupLevel Level { get; init; }

    /// <summary>Why this level was chosen (for a full: why no incremental was possible).</summary>
    public required string Reason { get; init; }

    /// <summary>The checkpoint whose dirty bitmap an incremental read.</summary>
    public string? Base { get; init; }

    /// <summary>The chain file, relative to the domain's directory (<c>vda/tidemark.c.2.qcow2</c>).</summary>
    public required string File { get; init; }

    /// <summary>The chain file's backing file name as written in its header (relative), or null for a full.</summary>
    public string? BackingFile { get; init; }

    public required long VirtualSize { get; init; }

    /// <summary>Bytes of data copied (zero ranges excluded).</summary>
    public required long DataBytes { get; init; }

    /// <summary>The ranges this backup wrote into its chain file, in offset order.</summary>
    public required IReadOnlyList<ExtentRecord> Extents { get; init; }
}

/// <summary>A range of one backup: data with its XxHash64, or zeroes written over older data.</summary>
public sealed record ExtentRecord(long Offset, long Length, ExtentContent Content, string? XxHash64 = null);

/// <summary>What an extent of a backup holds.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ExtentContent>))]
public enum ExtentContent
{
    [JsonStringEnumMemberName("data")]
    Data,

    [JsonStringEnumMemberName("zero")]
    Zero,
}

/// <summary>A disk's backup level.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BackupLevel>))]
public enum BackupLevel
{
    [JsonStringEnumMemberName("full")]
    Full,

    [JsonStringEnumMemberName("incremental")]
    Incremental,
}

/// <summary>System.Text.Json source generation for the manifest (no reflection: the CLI is compiled ahead of time).</summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(BackupManifest))]
[JsonSerializable(typeof(PendingBackup))]
[JsonSerializable(typeof(Tidemark.Backup.Prune.PendingFold))]
internal sealed partial class ManifestJsonContext : JsonSerializerContext
{
}
