using System.CommandLine;

namespace Tidemark.Cli.Commands.Image.Snapshot;

/// <summary><c>tidemark image snapshot -l [-U] FILE</c>.</summary>
internal static class SnapshotCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var list = new Option<bool>("-l") { Description = "List the image's internal snapshots (the only action: snapshots are kept, never created, applied or deleted)." };
        var forceShare = new Option<bool>("-U", "--force-share") { Description = "Accepted for qemu-img's command line; the image is opened read-only and shared anyway." };
        var file = new Argument<string>("FILE") { Description = "The image." };
        var command = new Command("snapshot", "List a qcow2 image's internal snapshots, as qemu-img snapshot -l does.");
        command.Options.Add(list);
        command.Options.Add(forceShare);
        command.Arguments.Add(file);
        command.SetAction((r, ct) => new SnapshotCommand(console).RunAsync(r.GetValue(file)!, r.GetValue(list), ct));
        return command;
    }
}
