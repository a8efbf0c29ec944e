using System.CommandLine;

namespace Tidemark.Cli.Commands.Backup;

/// <summary><c>tidemark backup ...</c>: pull backups of a domain's disks into a repository of qcow2 chains.</summary>
internal static class BackupCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var command = new Command("backup", "Back up a domain's disks (full or incremental, pull mode, through libvirt's API) into a repository of qcow2 chains, list what it holds, serve a backup over NBD, and prune or merge old backups.");

        // One line per subcommand; each folder owns the rest.
        command.Subcommands.Add(Run.BackupRunCommandDefinition.Build(console));
        command.Subcommands.Add(List.BackupListCommandDefinition.Build(console));
        command.Subcommands.Add(Serve.BackupServeCommandDefinition.Build(console));
        command.Subcommands.Add(Prune.BackupPruneCommandDefinition.Prune(console));
        command.Subcommands.Add(Prune.BackupPruneCommandDefinition.Merge(console));
        return command;
    }
}
