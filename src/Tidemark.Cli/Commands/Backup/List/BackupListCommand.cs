using System.Globalization;
using System.Text;
using Tidemark.Backup.Repository;

namespace Tidemark.Cli.Commands.Backup.List;

/// <summary>
/// Runs <c>backup list</c>: one row per disk of every complete backup, oldest first. A chain
/// file that is missing, unreadable or not qcow2 shows as such in the Stored column (and as a
/// <c>problem</c> in JSON), then, as <c>verify</c> reports damage, one <c>damaged: FILE: …</c>
/// line per file and exit status 1: the backup is listed but would not restore.
/// </summary>
internal static class BackupListCommand
{
    public static async Task<int> RunAsync(CliConsole console, BackupRepository repository, string? domain, bool json, CancellationToken cancellationToken)
    {
        RepositoryCommand.RequireExisting(repository);

        var rows = new List<ListedDisk>();
        foreach (var name in domain is null ? repository.Domains() : [domain])
        {
            foreach (var manifest in await repository.ReadManifestsAsync(name, cancellationToken).ConfigureAwait(false))
            {
                foreach (var disk in manifest.Disks)
                {
                    rows.Add(new ListedDisk(manifest, disk, StoredChainFile.Inspect(repository.PathOf(manifest.Domain, disk.File))));
                }
            }
        }

        await console.Out.WriteAsync(json ? Json(rows) : Table(rows)).ConfigureAwait(false);
        var damaged = rows.Where(r => r.Stored.Damaged).ToList();
        if (!json)
        {
            foreach (var row in damaged)
            {
                await console.Out.WriteLineAsync($"damaged: {row.Manifest.Domain}/{row.Disk.File}: {row.Stored.Problem}").ConfigureAwait(false);
            }
        }

        return damaged.Count == 0 ? 0 : 1;
    }

    private sealed record ListedDisk(BackupManifest Manifest, DiskManifest Disk, StoredChainFile Stored);

    private static string Table(List<ListedDisk> rows)
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
                StoredText(stored),
                stored.Damaged || stored.Bytes is not { } bytes ? "-" : Ratio(disk.DataBytes, bytes).ToString("0.00", CultureInfo.InvariantCulture));
        }

        return text.ToString();
    }

    /// <summary>The Stored column: bytes, or the damage in capitals so it stands out among numbers.</summary>
    private static string StoredText(StoredChainFile stored) => stored.State switch
    {
        StoredChainFileState.Present => stored.Bytes.GetValueOrDefault().ToString(CultureInfo.InvariantCulture),
        StoredChainFileState.Missing => "MISSING",
        StoredChainFileState.Unreadable => "UNREADABLE",
        _ => "NOT QCOW2",
    };

    /// <summary>Data bytes per stored byte: above 1 when compression pays more than the qcow2 metadata costs.</summary>
    private static double Ratio(long data, long stored) => stored == 0 ? 0 : (double)data / stored;

    private static string Json(List<ListedDisk> rows)
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
                    if (stored.Bytes is { } bytes)
                    {
                        w.WriteNumber("stored-bytes", bytes);
                    }
                    else
                    {
                        w.WriteNull("stored-bytes");
                    }

                    if (stored.Problem is { } problem)
                    {
                        w.WriteString("problem", problem);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }) + "\n";
    }
}
