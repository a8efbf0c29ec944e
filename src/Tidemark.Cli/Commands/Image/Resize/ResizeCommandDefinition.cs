using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Resize;

/// <summary><c>tidemark image resize [--shrink] [-f FMT] FILE [+|-]SIZE</c>.</summary>
internal static class ResizeCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var shrink = new Option<bool>("--shrink") { Description = "Allow making the image smaller (data past the new end is lost)." };
        var format = new Option<string?>("-f", "--format") { Description = "Image format (probed when omitted)." };
        var file = new Argument<string>("FILE") { Description = "The image to resize." };
        var size = new Argument<string>("SIZE") { Description = "New size in bytes or with a suffix k, M, G, T, P, E; +SIZE or -SIZE is relative (put -- before a negative one)." };
        var command = new Command("resize", "Change an image's virtual size, as qemu-img resize does; persistent bitmaps follow the image, the new area clean.");
        command.Options.Add(shrink);
        command.Options.Add(format);
        command.Arguments.Add(file);
        command.Arguments.Add(size);
        command.SetAction((r, ct) => new ResizeCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(size)!, r.GetValue(format), r.GetValue(shrink), ct));
        return command;
    }
}
