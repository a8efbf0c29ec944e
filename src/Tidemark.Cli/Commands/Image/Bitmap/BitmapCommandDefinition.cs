using System.CommandLine;
using System.CommandLine.Parsing;

namespace Tidemark.Cli.Commands.Image.Bitmap;

/// <summary>
/// <c>tidemark image bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
/// [-g GRANULARITY] [-b SOURCE_FILE [-F SOURCE_FMT]] FILE BITMAP</c>, as <c>qemu-img bitmap</c>
/// (formats.md §3.4): the operations run on BITMAP in command-line order.
/// </summary>
internal static class BitmapCommandDefinition
{
    /// <param name="console">Unused: like qemu-img bitmap, the command prints nothing on success, and errors go through <see cref="CliException"/>.</param>
    public static Command Build(CliConsole console)
    {
        _ = console;
        var add = new Option<bool>("--add") { Description = "Create BITMAP, empty and enabled (persistent)." };
        var remove = new Option<bool>("--remove") { Description = "Delete BITMAP from the image (also an inconsistent one)." };
        var clear = new Option<bool>("--clear") { Description = "Mark every bit of BITMAP clean." };
        var enable = new Option<bool>("--enable") { Description = "Make BITMAP record writes." };
        var disable = new Option<bool>("--disable") { Description = "Stop BITMAP from recording writes (its content is frozen)." };
        var merge = new Option<string[]>("--merge") { Description = "Set in BITMAP every bit set in bitmap SOURCE (of FILE, or of -b SOURCE_FILE).", AllowMultipleArgumentsPerToken = false };
        var granularity = new Option<string?>("-g", "--granularity") { Description = "With --add: bytes per bit, a power of two from 512 to 2G (k, M, G suffixes); default the cluster size clamped to 4k..64k." };
        var sourceFile = new Option<string?>("-b", "--source-file") { Description = "With --merge: read the source bitmap from this image." };
        var sourceFormat = new Option<string?>("-F", "--source-format") { Description = "With -b: its format (qcow2)." };
        var format = new Option<string?>("-f", "--format") { Description = "Format of FILE (qcow2; only qcow2 holds bitmaps)." };
        var file = new Argument<string>("FILE") { Description = "The qcow2 image." };
        var bitmap = new Argument<string>("BITMAP") { Description = "The bitmap to act on." };

        var command = new Command("bitmap", "Add, remove, clear, enable, disable or merge persistent dirty bitmaps of a qcow2 image, as qemu-img bitmap does. Several operations run in command-line order.");
        foreach (var option in new Option[] { add, remove, clear, enable, disable, merge, granularity, sourceFile, sourceFormat, format })
        {
            command.Options.Add(option);
        }

        command.Arguments.Add(file);
        command.Arguments.Add(bitmap);
        command.SetAction((r, ct) => BitmapCommand.RunAsync(
            new BitmapSettings
            {
                File = r.GetValue(file)!,
                Bitmap = r.GetValue(bitmap)!,
                Operations = OperationsInOrder(r, command),
                Granularity = r.GetValue(granularity),
                SourceFile = r.GetValue(sourceFile),
                SourceFormat = r.GetValue(sourceFormat),
                Format = r.GetValue(format),
            },
            ct));
        return command;
    }

    // The parser keeps each option's values but not the order between different options, which
    // qemu-img honours (--remove --add recreates, --add --merge fills); the tokens have it.
    private static List<BitmapOperation> OperationsInOrder(ParseResult result, Command command)
    {
        var operations = new List<BitmapOperation>();
        var tokens = result.Tokens;
        for (var i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Type != TokenType.Option)
            {
                continue;
            }

            var option = command.Options.FirstOrDefault(o => o.Name == tokens[i].Value || o.Aliases.Contains(tokens[i].Value));
            BitmapOperation? operation = option?.Name switch
            {
                "--add" => new BitmapOperation(BitmapOperationKind.Add, null),
                "--remove" => new BitmapOperation(BitmapOperationKind.Remove, null),
                "--clear" => new BitmapOperation(BitmapOperationKind.Clear, null),
                "--enable" => new BitmapOperation(BitmapOperationKind.Enable, null),
                "--disable" => new BitmapOperation(BitmapOperationKind.Disable, null),
                "--merge" when i + 1 < tokens.Count => new BitmapOperation(BitmapOperationKind.Merge, tokens[i + 1].Value),
                _ => null,
            };
            if (operation is not null)
            {
                operations.Add(operation);
            }
        }

        return operations;
    }
}

/// <summary>The operations of <c>image bitmap</c>, named as qemu-img names them in its errors.</summary>
internal enum BitmapOperationKind
{
    Add,
    Remove,
    Clear,
    Enable,
    Disable,
    Merge,
}

/// <summary>One operation; <paramref name="Source"/> is the source bitmap of a merge.</summary>
internal sealed record BitmapOperation(BitmapOperationKind Kind, string? Source);

/// <summary>The parsed command line of <c>image bitmap</c>.</summary>
internal sealed record BitmapSettings
{
    public required string File { get; init; }

    public required string Bitmap { get; init; }

    public required IReadOnlyList<BitmapOperation> Operations { get; init; }

    public string? Granularity { get; init; }

    public string? SourceFile { get; init; }

    public string? SourceFormat { get; init; }

    public string? Format { get; init; }
}
