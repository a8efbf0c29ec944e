using System.CommandLine;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Check;

/// <summary><c>tidemark image check [--output=human|json] [-r leaks|all] [-f FMT] FILE</c>.</summary>
internal static class CheckCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var output = new Option<string>("--output") { Description = "human (default) or json, with qemu-img check's field names.", DefaultValueFactory = _ => "human" };
        output.AcceptOnlyFromAmong("human", "json");
        var format = new Option<string?>("-f", "--format") { Description = "Image format (probed when omitted)." };
        var repair = new Option<string?>("-r") { Description = "Repair: leaks (leaked clusters only) or all (also refcount errors, COPIED flags, a rebuilt refcount structure), as qemu-img check -r." };
        repair.AcceptOnlyFromAmong("leaks", "all");
        var file = new Argument<string>("FILE") { Description = "The image to check." };
        var command = new Command("check", "Check a qcow2 image's refcounts and tables. Exit status as qemu-img check: 0 clean, 1 check failed, 2 corrupted, 3 leaked clusters, 63 format without checks.");
        command.Options.Add(output);
        command.Options.Add(format);
        command.Options.Add(repair);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new CheckCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(format), r.GetValue(output) == "json", ToMode(r.GetValue(repair)), ct));
        return command;
    }

    private static Qcow2RepairMode ToMode(string? repair) => repair switch
    {
        "leaks" => Qcow2RepairMode.Leaks,
        "all" => Qcow2RepairMode.All,
        _ => Qcow2RepairMode.None,
    };
}
