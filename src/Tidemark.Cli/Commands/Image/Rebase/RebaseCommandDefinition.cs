using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Rebase;

/// <summary><c>tidemark image rebase [-u] [-f FMT] [-b BACKING] [-F FMT] [-q] FILE</c>.</summary>
internal static class RebaseCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var unsafeMode = new Option<bool>("-u") { Description = "Unsafe: change only the backing file name in the header, without comparing the old and new backing files." };
        var format = new Option<string?>("-f") { Description = "Image format (probed when omitted)." };
        var backing = new Option<string?>("-b") { Description = "The new backing file (relative names from the image's directory); \"\" for none, which copies the whole chain's data into the image." };
        var backingFormat = new Option<string?>("-F") { Description = "The new backing file's format (required with a backing file, as qemu-img 7.2)." };
        var quiet = new Option<bool>("-q") { Description = "Quiet (accepted as qemu-img does; rebase prints nothing on success)." };
        var progress = new Option<bool>("-p") { Description = "Accepted for qemu-img compatibility; no progress is shown." };
        var file = new Argument<string>("FILE") { Description = "The image to rebase (qcow2)." };
        var command = new Command("rebase", "Change an image's backing file, as qemu-img rebase does: safe mode first copies every range where the old and new backing files differ, so the guest content stays the same.");
        command.Options.Add(unsafeMode);
        command.Options.Add(format);
        command.Options.Add(backing);
        command.Options.Add(backingFormat);
        command.Options.Add(quiet);
        command.Options.Add(progress);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new RebaseCommand(console).RunAsync(
            new RebaseSettings { File = r.GetValue(file)!, Format = r.GetValue(format), Backing = r.GetValue(backing), BackingFormat = r.GetValue(backingFormat), Unsafe = r.GetValue(unsafeMode) },
            ct));
        return command;
    }
}
