using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Map;

/// <summary><c>tidemark image map [--output=human|json] [-f FMT] FILE</c>.</summary>
internal static class MapCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var output = new Option<string>("--output") { Description = "human (default) or json, with qemu-img map's field names.", DefaultValueFactory = _ => "human" };
        output.AcceptOnlyFromAmong("human", "json");
        var format = new Option<string?>("-f", "--format") { Description = "Image format (probed when omitted)." };
        var file = new Argument<string>("FILE") { Description = "The image to map." };
        var command = new Command("map", "Show which ranges of an image hold data, read as zeroes, or come from which layer of the backing chain.");
        command.Options.Add(output);
        command.Options.Add(format);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new MapCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(format), r.GetValue(output) == "json", ct));
        return command;
    }
}
