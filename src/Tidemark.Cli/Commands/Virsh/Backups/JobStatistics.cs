using System.Globalization;
using System.Text;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Backups;

/// <summary>
/// A job's statistics (virDomainGetJobStats) read by libvirt's field names, and printed as
/// virsh's <c>domjobinfo</c> prints them: "%-17s %-12s" labels, byte counts in the largest
/// binary unit with three decimals. virsh calls the disk_* fields "File …".
/// </summary>
internal sealed class JobStatistics(DomainJobType type, IReadOnlyList<TypedParameter> parameters)
{
    public DomainJobType Type { get; } = type;

    public bool Active => Type is DomainJobType.Bounded or DomainJobType.Unbounded;

    public ulong? Get(string field) => parameters.FirstOrDefault(p => p.Field == field) is { } p ? p.AsUInt64() : null;

    public string? Text(string field) => parameters.FirstOrDefault(p => p.Field == field)?.Text;

    public static JobStatistics From(JobStats stats) => new(stats.Type, stats.Parameters);

    /// <summary>Bytes copied so far, and the total when the job knows it (a pull backup does not).</summary>
    public (ulong Processed, ulong? Total) Progress => (Get("disk_processed") ?? 0, Get("disk_total") is { } t and > 0 ? t : null);

    public JobInfoEntry ToJson() => new(VirshText.JobType(Type))
    {
        Operation = Get("operation") is { } op ? VirshText.Operation((long)op) : null,
        TimeElapsedMs = Get("time_elapsed"),
        DiskTotal = Get("disk_total"),
        DiskProcessed = Get("disk_processed"),
        DiskRemaining = Get("disk_remaining"),
        DiskTempUsed = Get("disk_temp_used"),
        DiskTempTotal = Get("disk_temp_total"),
        Success = Get("success") is { } ok ? ok != 0 : null,
        ErrorMessage = Text("errmsg"),
    };

    public override string ToString()
    {
        var sb = new StringBuilder();
        void Line(string label, string value) => sb.Append(CultureInfo.InvariantCulture, $"{label,-17} {value}\n");
        Line("Job type:", $"{VirshText.JobType(Type),-12}");
        if (Type == DomainJobType.None)
        {
            return sb.ToString();
        }

        if (Get("operation") is { } operation)
        {
            Line("Operation:", $"{VirshText.Operation((long)operation),-12}");
        }

        Line("Time elapsed:", string.Create(CultureInfo.InvariantCulture, $"{Get("time_elapsed") ?? 0,-12} ms"));
        if (Type == DomainJobType.Bounded && Get("time_remaining") is { } remaining)
        {
            Line("Time remaining:", string.Create(CultureInfo.InvariantCulture, $"{remaining,-12} ms"));
        }

        Triple("Data", "data");
        Triple("Memory", "memory");
        Triple("File", "disk");
        if (Get("disk_temp_used") is { } used)
        {
            Line("Temporary disk space use:", VirshText.Capacity(used));
        }

        if (Get("disk_temp_total") is { } total)
        {
            Line("Temporary disk space total:", VirshText.Capacity(total));
        }

        if (Text("errmsg") is { } error)
        {
            Line("Error message:", error);
        }

        return sb.ToString();

        void Triple(string label, string prefix)
        {
            var processed = Get(prefix + "_processed") ?? 0;
            var left = Get(prefix + "_remaining") ?? 0;
            var all = Get(prefix + "_total") ?? 0;
            if (processed != 0 || left != 0 || all != 0)
            {
                Line(label + " processed:", VirshText.Capacity(processed));
                Line(label + " remaining:", VirshText.Capacity(left));
                Line(label + " total:", VirshText.Capacity(all));
            }
        }
    }
}
