using System.CommandLine;
using Tidemark.Backup.Prune;

namespace Tidemark.Cli.Commands.Backup.Prune;

/// <summary>
/// <c>tidemark backup prune --repo DIR [--domain D] --keep N [--json]</c> and
/// <c>tidemark backup merge --repo DIR --domain D --until CHECKPOINT [--json]</c>: both fold the
/// oldest backups of a domain into the one that becomes its oldest (<see cref="ChainFold"/>).
/// </summary>
internal static class BackupPruneCommandDefinition
{
    public static Command Prune(CliConsole console)
    {
        var repository = RepositoryCommand.RepositoryOption();
        var domain = new Option<string?>("--domain") { Description = "Only this domain (default: every domain)." };
        var keep = new Option<int>("--keep") { Description = "How many of each domain's newest backups stay restorable (at least 1).", Required = true };
        keep.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1)
            {
                r.AddError("--keep must be at least 1: the newest backup is the base of the next incremental");
            }
        });
        var json = RepositoryCommand.JsonOption("Print a JSON summary.");
        var command = new Command("prune", "Keep the newest N backups of each domain restorable: fold the older ones into the oldest kept backup (crash-safe: an interrupted prune is finished by the next command), then delete their files.")
        {
            repository, domain, keep, json,
        };
        RepositoryCommand.SetAction(command, async (r, ct) =>
        {
            var repo = r.Repository(repository);
            RepositoryCommand.RequireExisting(repo);
            var results = await ChainFold.PruneAsync(repo, r.GetValue(domain), r.GetValue(keep), Reporter(console, r.GetValue(json)), ct).ConfigureAwait(false);
            return await PrintAsync(console, results, r.GetValue(json)).ConfigureAwait(false);
        });
        return command;
    }

    public static Command Merge(CliConsole console)
    {
        var repository = RepositoryCommand.RepositoryOption();
        var domain = new Option<string>("--domain") { Description = "The domain whose backups to merge.", Required = true };
        var until = new Option<string>("--until", "--upto") { Description = "The backup that becomes the oldest: every backup before it is folded into it.", Required = true };
        var json = RepositoryCommand.JsonOption("Print a JSON summary.");
        var command = new Command("merge", "Fold a domain's backups before CHECKPOINT into it (crash-safe), so CHECKPOINT becomes the oldest restorable backup.")
        {
            repository, domain, until, json,
        };
        RepositoryCommand.SetAction(command, async (r, ct) =>
        {
            var repo = r.Repository(repository);
            RepositoryCommand.RequireExisting(repo);
            var result = await ChainFold.MergeAsync(repo, r.GetValue(domain)!, r.GetValue(until)!, Reporter(console, r.GetValue(json)), ct).ConfigureAwait(false);
            return await PrintAsync(console, [result], r.GetValue(json)).ConfigureAwait(false);
        });
        return command;
    }

    // Lines go to stderr under --json, so stdout holds only the document.
    private static Action<string> Reporter(CliConsole console, bool json)
    {
        var lines = json ? console.Error : console.Out;
        return line => lines.WriteLine(line);
    }

    private static async Task<int> PrintAsync(CliConsole console, IReadOnlyList<FoldResult> results, bool json)
    {
        if (json)
        {
            await console.Out.WriteLineAsync(JsonText.Write(w =>
            {
                w.WriteStartArray();
                foreach (var result in results)
                {
                    w.WriteStartObject();
                    w.WriteString("domain", result.Domain);
                    w.WriteString("oldest", result.NewBase);
                    w.WriteStartArray("dropped");
                    result.Dropped.ToList().ForEach(w.WriteStringValue);
                    w.WriteEndArray();
                    w.WriteStartArray("folded");
                    result.Folded.ToList().ForEach(w.WriteStringValue);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            })).ConfigureAwait(false);
        }

        return 0;
    }
}
