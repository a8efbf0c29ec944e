using System.Text.Json.Serialization;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>A domain as <c>list --json</c> prints it (id null while inactive).</summary>
internal sealed record DomainEntry(int? Id, string Name, string Uuid, string State);

/// <summary><c>dominfo --json</c>.</summary>
internal sealed record DomainInfoEntry(int? Id, string Name, string Uuid, string State, int Cpus, ulong MaxMemoryKib, ulong UsedMemoryKib, bool? Persistent, bool? Autostart);

/// <summary>One disk of <c>domblklist --json</c>.</summary>
internal sealed record DiskEntry(string Type, string Device, string Target, string Source);

/// <summary>One disk of <c>domnbd --json</c>: its NBD URI on the domain's unix socket and, when the domain has one, on its 127.0.0.1 listener.</summary>
internal sealed record NbdEntry(string Target, string Uri, string? TcpUri);

/// <summary>One checkpoint of <c>checkpoint-list --json</c> (creation time in Unix seconds).</summary>
internal sealed record CheckpointEntry(string Name, long? CreationTime, string? Parent);

/// <summary><c>checkpoint-info --json</c>.</summary>
internal sealed record CheckpointInfoEntry(string Name, string Domain, string? Parent, int Children, int Descendants);

/// <summary><c>domjobinfo --json</c>: the job's type and the statistics libvirt reports for a backup (bytes, milliseconds).</summary>
internal sealed record JobInfoEntry(string Type)
{
    public string? Operation { get; init; }

    public ulong? TimeElapsedMs { get; init; }

    public ulong? DiskTotal { get; init; }

    public ulong? DiskProcessed { get; init; }

    public ulong? DiskRemaining { get; init; }

    public ulong? DiskTempUsed { get; init; }

    public ulong? DiskTempTotal { get; init; }

    public bool? Success { get; init; }

    public string? ErrorMessage { get; init; }
}

/// <summary>Source-generated serialization for the <c>--json</c> outputs (no reflection, trim- and AOT-safe).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DomainEntry[]))]
[JsonSerializable(typeof(DomainInfoEntry))]
[JsonSerializable(typeof(DiskEntry[]))]
[JsonSerializable(typeof(NbdEntry[]))]
[JsonSerializable(typeof(CheckpointEntry[]))]
[JsonSerializable(typeof(CheckpointInfoEntry))]
[JsonSerializable(typeof(JobInfoEntry))]
internal sealed partial class VirshJsonContext : JsonSerializerContext;
