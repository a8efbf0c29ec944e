using System.CommandLine;

namespace Tidemark.Cli.Commands.Image;

/// <summary><c>tidemark image ...</c>: qemu-img style commands on image files.</summary>
internal static class ImageCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var command = new Command("image", "Create, inspect, check, compare, convert, map, resize, rebase, commit and measure disk images (qcow2, raw) and manage their dirty bitmaps, as qemu-img does.");

        // One line per subcommand; each folder owns the rest.
        command.Subcommands.Add(Create.CreateCommandDefinition.Build(console));
        command.Subcommands.Add(Info.InfoCommandDefinition.Build(console));
        command.Subcommands.Add(Check.CheckCommandDefinition.Build(console));
        command.Subcommands.Add(Compare.CompareCommandDefinition.Build(console));
        command.Subcommands.Add(Convert.ConvertCommandDefinition.Build(console));
        command.Subcommands.Add(Map.MapCommandDefinition.Build(console));
        command.Subcommands.Add(Bitmap.BitmapCommandDefinition.Build(console));
        command.Subcommands.Add(Resize.ResizeCommandDefinition.Build(console));
        command.Subcommands.Add(Rebase.RebaseCommandDefinition.Build(console));
        command.Subcommands.Add(Commit.CommitCommandDefinition.Build(console));
        command.Subcommands.Add(Measure.MeasureCommandDefinition.Build(console));
        command.Subcommands.Add(Snapshot.SnapshotCommandDefinition.Build(console));
        return command;
    }
}
