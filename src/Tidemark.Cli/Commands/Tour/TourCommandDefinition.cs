using System.CommandLine;

namespace Tidemark.Cli.Commands.Tour;

/// <summary><c>tidemark tour</c>: the options and help of the verb.</summary>
internal static class TourCommandDefinition
{
    public static readonly Option<string?> Examples = new("--examples")
    {
        Description = "folder of the example documents (default: examples/ of the Tidemark checkout)",
        HelpName = "DIR",
    };

    public static readonly Option<bool> Documents = new("--documents")
    {
        Description = "walk the example documents instead: validate and format a domain, checkpoints (create, redefine) "
            + "and backups (push, pull incremental over TCP, pull over a unix socket) exactly as libvirt would",
    };

    public static Command Create(CliConsole console)
    {
        var command = new Command(
            "tour",
            "Tidemark's main job end to end: a throw-away daemon and state directory, a domain with two qcow2 disks, guest "
            + "writes over NBD, a checkpoint and a full push backup, an incremental push and an incremental pull backup, "
            + "each disk rebuilt from its backups and compared. Needs no QEMU and no libvirt. Exits 0 only if every step held.");
        command.Options.Add(Documents);
        command.Options.Add(Examples);
        command.SetAction((result, cancellationToken) => result.GetValue(Documents) || result.GetValue(Examples) is not null
            ? TourCommand.RunAsync(console, result.GetValue(Examples), cancellationToken)
            : new SystemTour(console).RunAsync(cancellationToken));
        return command;
    }
}
