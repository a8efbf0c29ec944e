using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Commit;

/// <summary><c>tidemark image commit [-f FMT] [-b BASE] [-d] [-q] FILE</c>.</summary>
internal static class CommitCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed when omitted)." };
        var baseFile = new Option<string?>("-b") { Description = "The image of the backing chain to commit into (default: the backing file); implies -d." };
        var drop = new Option<bool>("-d") { Description = "Leave the image as it is instead of emptying it after the commit." };
        var quiet = new Option<bool>("-q") { Description = "Quiet: print nothing on success." };
        var progress = new Option<bool>("-p") { Description = "Accepted for qemu-img compatibility; no progress is shown." };
        var file = new Argument<string>("FILE") { Description = "The top image (qcow2) whose data goes into its base." };
        var command = new Command("commit", "Write an image's data into its backing file (or a base further down its chain), as qemu-img commit does; the image is emptied afterwards unless -d or -b.");
        command.Options.Add(format);
        command.Options.Add(baseFile);
        command.Options.Add(drop);
        command.Options.Add(quiet);
        command.Options.Add(progress);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new CommitCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(format), r.GetValue(baseFile), r.GetValue(drop), r.GetValue(quiet), ct));
        return command;
    }
}
