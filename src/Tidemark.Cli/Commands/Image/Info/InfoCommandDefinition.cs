using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Info;

/// <summary><c>tidemark image info [--output=human|json] [--backing-chain] [-f FMT] FILE</c>.</summary>
internal static class InfoCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var output = new Option<string>("--output") { Description = "human (default) or json, with qemu-img info's field names.", DefaultValueFactory = _ => "human" };
        output.AcceptOnlyFromAmong("human", "json");
        var chain = new Option<bool>("--backing-chain") { Description = "Describe every image of the backing chain, top first." };
        var format = new Option<string?>("-f", "--format") { Description = "Image format (probed when omitted)." };
        var file = new Argument<string>("FILE") { Description = "The image to describe." };
        var command = new Command("info", "Show an image's format, sizes, cluster size, backing chain and bitmaps, as qemu-img info does.");
        command.Options.Add(output);
        command.Options.Add(chain);
        command.Options.Add(format);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new InfoCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(format), r.GetValue(output) == "json", r.GetValue(chain), ct));
        return command;
    }
}
