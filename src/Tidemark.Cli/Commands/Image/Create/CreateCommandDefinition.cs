using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Create;

/// <summary><c>tidemark image create [-f qcow2|raw] [-b BACKING -F FMT] [-o OPTIONS] FILE [SIZE]</c>.</summary>
internal static class CreateCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var format = new Option<string>("-f", "--format") { Description = "Image format: qcow2 (default) or raw.", DefaultValueFactory = _ => "qcow2" };
        var backing = new Option<string?>("-b", "--backing") { Description = "Backing file, stored as given (a relative name is relative to the new image)." };
        var backingFormat = new Option<string?>("-F", "--backing-format") { Description = "Format of the backing file (qcow2 or raw)." };
        var options = new Option<string[]>("-o") { Description = "Format options, comma separated: cluster_size=N, compat=1.1|0.10, refcount_bits=N, compression_type=zlib|zstd.", AllowMultipleArgumentsPerToken = false };
        var file = new Argument<string>("FILE") { Description = "The image to create." };
        var size = new Argument<string?>("SIZE") { Description = "Virtual size (k, M, G, T suffixes); defaults to the backing file's size.", Arity = ArgumentArity.ZeroOrOne };

        var command = new Command("create", "Create a new disk image, as qemu-img create does.");
        command.Options.Add(format);
        command.Options.Add(backing);
        command.Options.Add(backingFormat);
        command.Options.Add(options);
        command.Arguments.Add(file);
        command.Arguments.Add(size);
        command.SetAction((r, ct) => new CreateCommand(console).RunAsync(
            new CreateSettings
            {
                Format = r.GetValue(format)!,
                Backing = r.GetValue(backing),
                BackingFormat = r.GetValue(backingFormat),
                Options = r.GetValue(options) ?? [],
                File = r.GetValue(file)!,
                Size = r.GetValue(size),
            },
            ct));
        return command;
    }
}

/// <summary>The parsed command line of <c>image create</c>.</summary>
internal sealed record CreateSettings
{
    public required string Format { get; init; }

    public string? Backing { get; init; }

    public string? BackingFormat { get; init; }

    public required IReadOnlyList<string> Options { get; init; }

    public required string File { get; init; }

    public string? Size { get; init; }
}
