using System.CommandLine;

namespace Tidemark.Cli.Commands.Backup.List;

/// <summary><c>tidemark backup list --repo DIR [--domain D] [--json]</c>.</summary>
internal static class BackupListCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var repository = new Option<string>("--repo") { Description = "The repository directory.", Required = true };
        var domain = new Option<string?>("--domain") { Description = "Only this domain." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var command = new Command("list", "List the repository's backups: domain, checkpoint, chain, time, and per disk its level, data, virtual size and stored size.")
        {
            repository, domain, json,
        };
        command.SetAction((r, ct) => BackupCommandErrors.RunAsync(() => BackupListCommand.RunAsync(console, new Tidemark.Backup.Repository.BackupRepository(r.GetValue(repository)!), r.GetValue(domain), r.GetValue(json), ct)));
        return command;
    }
}
