using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Measure;

/// <summary><c>tidemark image measure [--output=human|json] [-O FMT] [-o OPTIONS] [--size SIZE | [-f FMT] FILE]</c>.</summary>
internal static class MeasureCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var output = new Option<string>("--output") { Description = "human (default) or json, as qemu-img measure prints them.", DefaultValueFactory = _ => "human" };
        var format = new Option<string?>("-f") { Description = "Source format (probed when omitted)." };
        var targetFormat = new Option<string>("-O") { Description = "Target format: raw (default, as qemu-img) or qcow2.", DefaultValueFactory = _ => "raw" };
        var options = new Option<string[]>("-o") { Description = "Target format options: cluster_size, compat, refcount_bits, extended_l2, preallocation, backing_file (qcow2); preallocation (raw)." };
        var size = new Option<string?>("--size") { Description = "Measure an empty image of this size instead of a source image." };
        var forceShare = new Option<bool>("-U", "--force-share") { Description = "Accepted for qemu-img's command line; the source is opened read-only and shared anyway." };
        var files = new Argument<string[]>("FILE") { Description = "The source image whose content the new image would hold.", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("measure", "Show how many bytes a new image of the target format needs for a source image's content (or an empty image of --size), required and fully allocated, as qemu-img measure does.");
        command.Options.Add(output);
        command.Options.Add(format);
        command.Options.Add(targetFormat);
        command.Options.Add(options);
        command.Options.Add(size);
        command.Options.Add(forceShare);
        command.Arguments.Add(files);
        command.SetAction((r, ct) => new MeasureCommand(console).RunAsync(
            new MeasureSettings
            {
                Output = r.GetValue(output)!,
                SourceFormat = r.GetValue(format),
                TargetFormat = r.GetValue(targetFormat)!,
                Options = r.GetValue(options) ?? [],
                Size = r.GetValue(size),
                Files = r.GetValue(files) ?? [],
            },
            ct));
        return command;
    }
}
