using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Convert;

/// <summary><c>tidemark image convert [-f FMT] [-O qcow2|raw] [-c] [-o OPTIONS] SRC DST</c>.</summary>
internal static class ConvertCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var sourceFormat = new Option<string?>("-f") { Description = "Source format (probed when omitted)." };
        var targetFormat = new Option<string>("-O") { Description = "Target format: raw (default, as qemu-img) or qcow2.", DefaultValueFactory = _ => "raw" };
        var compress = new Option<bool>("-c") { Description = "Compress the target's clusters (qcow2 only)." };
        var options = new Option<string[]>("-o") { Description = "Target format options (as image create -o)." };
        var source = new Argument<string>("SRC") { Description = "Source image." };
        var target = new Argument<string>("DST") { Description = "Target image (created; overwritten if it exists)." };
        var command = new Command("convert", "Copy an image's guest content into a new image of the same or another format, sparsely: holes and zeroes are not written.");
        command.Options.Add(sourceFormat);
        command.Options.Add(targetFormat);
        command.Options.Add(compress);
        command.Options.Add(options);
        command.Arguments.Add(source);
        command.Arguments.Add(target);
        command.SetAction((r, ct) => new ConvertCommand(console).RunAsync(r.GetValue(source)!, r.GetValue(sourceFormat), r.GetValue(target)!, r.GetValue(targetFormat)!, r.GetValue(compress), r.GetValue(options) ?? [], ct));
        return command;
    }
}
