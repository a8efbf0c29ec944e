using System.Text;
using Tidemark.Cli.Commands.Image.Info;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Snapshot;

/// <summary>Runs <c>image snapshot -l</c>: qemu-img's dump_snapshots (nothing for an image without snapshots, or a raw one).</summary>
internal sealed class SnapshotCommand(CliConsole console)
{
    public async Task<int> RunAsync(string file, bool list, CancellationToken cancellationToken)
    {
        if (!list)
        {
            throw new CliException("image snapshot only lists snapshots: give -l");
        }

        if (!File.Exists(file))
        {
            throw new CliException($"Could not open '{file}': Could not open '{file}': No such file or directory");
        }

        var image = await ImageArguments.OpenWithoutBackingAsync(file, format: null, cancellationToken).ConfigureAwait(false);
        await using (image.ConfigureAwait(false))
        {
            if (image is Qcow2Image { SnapshotCount: > 0 } q)
            {
                var text = new StringBuilder();
                SnapshotList.AppendHuman(text, await q.ReadSnapshotsAsync(cancellationToken).ConfigureAwait(false));
                await console.Out.WriteAsync(text.ToString()).ConfigureAwait(false);
            }
        }

        return 0;
    }
}
