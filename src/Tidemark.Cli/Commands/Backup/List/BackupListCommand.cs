using System.Globalization;
using System.Text;
using Tidemark.Backup.Repository;

namespace Tidemark.Cli.Commands.Backup.List;

/// <summary>Runs <c>backup list</c>: one row per disk of every complete backup, oldest first.</summary>
internal static class BackupListCommand
{
    public static async Task<int> RunAsync(CliConsole console, BackupRepository repository, string? domain, bool json, CancellationToken cancellationToken)
    {
        RepositoryCommand.RequireExisting(repository);

        var rows = new List<(BackupManifest Manifest, DiskManifest Disk, long Stored)>();
        foreach (var name in domain is null ? repository.Domains() : [domain])
        {
            foreach (var manifest in await repository.ReadManifestsAsync(name, cancellationToken).ConfigureAwait(false))
            {
                foreach (var disk in manifest.Disks)
                {
                    var file = new FileInfo(repository.PathOf(manifest.Domain, disk.File));
                    rows.Add((manifest, disk, file.Exists ? file.Length : 0));
                }
            }
        }

        await console.Out.WriteAsync(json ? Json(rows) : Table(rows)).ConfigureAwait(false);
        return 0;
    }

    private static string Table(List<(BackupManifest Manifest, DiskManifest Disk, long Stored)> rows)
    {
        var text = new StringBuilder();
        var format = " {0,-12} {1,-28} {2,-20} {3,-5} {4,-11} {5,14} {6,14} {7,14} {8,6}\n";
        text.AppendFormat(CultureInfo.InvariantCulture, format, "Domain", "Checkpoint", "Completed", "Disk", "Level", "Data", "Virtual size", "Stored", "Ratio");
        text.Append('-', 134).Append('\n');
        foreach (var (manifest, disk, stored) in rows)
        {
            text.AppendFormat(
                CultureInfo.InvariantCulture,
                format,
                manifest.Domain,
                manifest.Checkpoint,
                manifest.Completed.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                disk.Name,
                disk.Level == BackupLevel.Full ? "full" : "incremental",
                disk.DataBytes,
                disk.VirtualSize,
                stored,
                Ratio(disk.DataBytes, stored).ToString("0.00", CultureInfo.InvariantCulture));
        }

        return text.ToString();
    }

    /// <summary>Data bytes per stored byte: above 1 when compression pays more than the qcow2 metadata costs.</summary>
    private static double Ratio(long data, long stored) => stored == 0 ? 0 : (double)data / stored;

    private static string Json(List<(BackupManifest Manifest, DiskManifest Disk, long Stored)> rows)
    {
        return JsonText.Write(w =>
        {
            w.WriteStartArray();
            foreach (var group in rows.GroupBy(r => r.Manifest))
            {
                var manifest = group.Key;
                w.WriteStartObject();
                w.WriteString("domain", manifest.Domain);
                w.WriteString("checkpoint", manifest.Checkpoint);
                w.WriteString("chain", manifest.Chain);
                w.WriteNumber("sequence", manifest.Sequence);
                if (manifest.Parent is { } parent)
                {
                    w.WriteString("parent", parent);
                }

                w.WriteString("started", manifest.Started);
                w.WriteString("completed", manifest.Completed);
                w.WriteString("compression", manifest.Compression ?? "none");
                w.WriteStartArray("disks");
                foreach (var (_, disk, stored) in group)
                {
                    w.WriteStartObject();
                    w.WriteString("name", disk.Name);
                    w.WriteString("level", disk.Level == BackupLevel.Full ? "full" : "incremental");
                    w.WriteString("reason", disk.Reason);
                    w.WriteString("file", disk.File);
                    w.WriteNumber("virtual-size", disk.VirtualSize);
                    w.WriteNumber("data-bytes", disk.DataBytes);
                    w.WriteNumber("stored-bytes", stored);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }) + "\n";
    }
}
