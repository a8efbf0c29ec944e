using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Check;

/// <summary><c>tidemark image check [--output=human|json] FILE</c>.</summary>
internal static class CheckCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var output = new Option<string>("--output") { Description = "human (default) or json, with qemu-img check's field names.", DefaultValueFactory = _ => "human" };
        output.AcceptOnlyFromAmong("human", "json");
        var format = new Option<string?>("-f", "--format") { Description = "Image format (probed when omitted)." };
        var file = new Argument<string>("FILE") { Description = "The image to check." };
        var command = new Command("check", "Check a qcow2 image's refcounts and tables. Exit status as qemu-img check: 0 clean, 1 check failed, 2 corrupted, 3 leaked clusters, 63 format without checks.");
        command.Options.Add(output);
        command.Options.Add(format);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new CheckCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(format), r.GetValue(output) == "json", ct));
        return command;
    }
}
