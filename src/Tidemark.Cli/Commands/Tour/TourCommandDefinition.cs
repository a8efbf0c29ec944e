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

    public static Command Create(CliConsole console)
    {
        var command = new Command(
            "tour",
            "Tidemark's main job end to end on its bundled examples: validate and format a domain, checkpoints "
            + "(create, redefine) and backups (push, pull incremental over TCP, pull over a unix socket) exactly as "
            + "libvirt would. Needs no QEMU and no libvirt. Exits 0 only if every step went as expected.");
        command.Options.Add(Examples);
        command.SetAction((result, cancellationToken) => TourCommand.RunAsync(console, result.GetValue(Examples), cancellationToken));
        return command;
    }
}
