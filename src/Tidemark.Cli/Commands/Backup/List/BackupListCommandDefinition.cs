using System.CommandLine;

namespace Tidemark.Cli.Commands.Backup.List;

/// <summary><c>tidemark backup list --repo DIR [--domain D] [--json]</c>.</summary>
internal static class BackupListCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var repository = RepositoryCommand.RepositoryOption();
        var domain = new Option<string?>("--domain") { Description = "Only this domain." };
        var json = RepositoryCommand.JsonOption("Print JSON instead of a table.");
        var command = new Command("list", "List the repository's backups: domain, checkpoint, chain, time, and per disk its level, data, virtual size and stored size.")
        {
            repository, domain, json,
        };
        RepositoryCommand.SetAction(command, (r, ct) => BackupListCommand.RunAsync(console, r.Repository(repository), r.GetValue(domain), r.GetValue(json), ct));
        return command;
    }
}
