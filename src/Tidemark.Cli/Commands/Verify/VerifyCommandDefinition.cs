using System.CommandLine;
using Tidemark.Cli.Commands.Backup;

namespace Tidemark.Cli.Commands.Verify;

/// <summary><c>tidemark verify --repo DIR [--domain D] [--checkpoint NAME] [--json]</c>: exit 0 when everything checks, 1 when something is damaged.</summary>
internal static class VerifyCommandDefinition
{
    public static Command Create(CliConsole console)
    {
        var repository = RepositoryCommand.RepositoryOption();
        var domain = new Option<string?>("--domain") { Description = "Only this domain (default: every domain)." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Only what restoring this backup needs: it and the backups before it." };
        var json = RepositoryCommand.JsonOption("Print a JSON report.");
        var command = new Command("verify", "Re-read every extent of the repository's backups, check its checksum, and check each chain file's structure (backing file, format, size); exit 1 naming any damaged file and offset. A fold an interrupted prune or merge left is finished first, under the repository lock.")
        {
            repository, domain, checkpoint, json,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(checkpoint) is not null && r.GetValue(domain) is null)
            {
                r.AddError("--checkpoint requires --domain");
            }
        });
        RepositoryCommand.SetAction(command, (r, ct) => VerifyCommand.RunAsync(console, r.Repository(repository), r.GetValue(domain), r.GetValue(checkpoint), r.GetValue(json), ct));
        return command;
    }
}
