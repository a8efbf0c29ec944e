using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Compare;

/// <summary><c>tidemark image compare [-f FMT] [-F FMT] [-s] A B</c>.</summary>
internal static class CompareCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var formatA = new Option<string?>("-f") { Description = "Format of the first image (probed when omitted)." };
        var formatB = new Option<string?>("-F") { Description = "Format of the second image (probed when omitted)." };
        var strict = new Option<bool>("-s") { Description = "Strict: a size difference or an allocation difference is a difference (qemu-img compare -s)." };
        var a = new Argument<string>("A") { Description = "First image." };
        var b = new Argument<string>("B") { Description = "Second image." };
        var command = new Command("compare", "Compare the guest-visible content of two images. Exit status as qemu-img compare: 0 identical, 1 different, 2 an image cannot be opened, 3 its metadata cannot be read, 4 its data cannot be read.");
        command.Options.Add(formatA);
        command.Options.Add(formatB);
        command.Options.Add(strict);
        command.Arguments.Add(a);
        command.Arguments.Add(b);
        command.SetAction((r, ct) => new CompareCommand(console).RunAsync(r.GetValue(a)!, r.GetValue(formatA), r.GetValue(b)!, r.GetValue(formatB), r.GetValue(strict), ct));
        return command;
    }
}
