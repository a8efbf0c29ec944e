using Tidemark.Backup.Restore;
using Tidemark.Cli.Commands.Backup;

namespace Tidemark.Cli.Commands.Restore;

/// <summary>
/// Runs <c>restore</c>: one line per disk restored (or JSON); on a terminal, unless
/// <c>--quiet</c> or <c>--json</c>, a bar per disk above them while the disks are copied.
/// </summary>
internal static class RestoreCommand
{
    public static async Task<int> RunAsync(CliConsole console, RestoreOptions options, bool json, bool quiet, CancellationToken cancellationToken)
    {
        var (manifest, _) = await options.Repository.FindAsync(options.Domain, options.Checkpoint, cancellationToken).ConfigureAwait(false);
        options = options with { Checkpoint = manifest.Checkpoint };
        var restored = TerminalCopyProgress.Shown(console, json, quiet)
            ? await TerminalCopyProgress.ShowAsync(console, (display, _) => DiskRestore.RunAsync(options with { Progress = display }, cancellationToken)).ConfigureAwait(false)
            : await DiskRestore.RunAsync(options, cancellationToken).ConfigureAwait(false);
        if (!json)
        {
            foreach (var disk in restored)
            {
                await console.Out.WriteLineAsync($"restored disk {disk.Disk} of domain '{options.Domain}' at {manifest.Checkpoint} to {disk.Path}").ConfigureAwait(false);
            }

            if (options.DefineUri is not null)
            {
                await console.Out.WriteLineAsync($"defined domain '{options.DefineName ?? options.Domain}' with the restored disks").ConfigureAwait(false);
            }

            return 0;
        }

        var text = JsonText.Write(w =>
        {
            w.WriteStartObject();
            w.WriteString("domain", options.Domain);
            w.WriteString("checkpoint", manifest.Checkpoint);
            if (options.DefineUri is not null)
            {
                w.WriteString("defined", options.DefineName ?? options.Domain);
            }

            w.WriteStartArray("disks");
            foreach (var disk in restored)
            {
                w.WriteStartObject();
                w.WriteString("name", disk.Disk);
                w.WriteString("path", disk.Path);
                w.WriteNumber("virtual-size", disk.VirtualSize);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
        await console.Out.WriteLineAsync(text).ConfigureAwait(false);
        return 0;
    }
}
