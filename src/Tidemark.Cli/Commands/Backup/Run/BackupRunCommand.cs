using Spectre.Console;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;

namespace Tidemark.Cli.Commands.Backup.Run;

/// <summary>
/// Runs <c>backup run</c>: one plain line per event, then a summary (or JSON); on a terminal,
/// unless <c>--quiet</c> or <c>--json</c>, the lines above a bar per disk.
/// </summary>
internal static class BackupRunCommand
{
    public static async Task<int> RunAsync(CliConsole console, BackupRunOptions options, bool json, bool quiet, CancellationToken cancellationToken)
    {
        if (TerminalCopyProgress.Shown(console, json, quiet))
        {
            await TerminalCopyProgress.ShowAsync(console, (display, ansi) =>
            {
                // Disks report lines in parallel; the live display takes one writer at a time.
                var gate = new Lock();
                return BackupRunner.RunAsync(options with { Progress = display, Report = line => { lock (gate) { ansi.WriteLine(line); } } }, cancellationToken);
            }).ConfigureAwait(false);
            return 0;
        }

        var lines = json ? console.Error : console.Out;
        var manifest = await BackupRunner.RunAsync(options with { Report = line => lines.WriteLine(line) }, cancellationToken).ConfigureAwait(false);
        if (json)
        {
            await console.Out.WriteLineAsync(Json(manifest)).ConfigureAwait(false);
        }

        return 0;
    }

    private static string Json(BackupManifest manifest)
    {
        return JsonText.Write(w =>
        {
            w.WriteStartObject();
            w.WriteString("domain", manifest.Domain);
            w.WriteString("checkpoint", manifest.Checkpoint);
            w.WriteString("chain", manifest.Chain);
            w.WriteNumber("sequence", manifest.Sequence);
            w.WriteString("started", manifest.Started);
            w.WriteString("completed", manifest.Completed);
            w.WriteStartArray("disks");
            foreach (var disk in manifest.Disks)
            {
                w.WriteStartObject();
                w.WriteString("name", disk.Name);
                w.WriteString("level", disk.Level == BackupLevel.Full ? "full" : "incremental");
                w.WriteString("reason", disk.Reason);
                w.WriteString("file", disk.File);
                w.WriteNumber("virtual-size", disk.VirtualSize);
                w.WriteNumber("data-bytes", disk.DataBytes);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }
}
