using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Commit;

/// <summary>Runs <c>image commit</c> with img_commit's checks, messages and exit status (0 or 1).</summary>
internal sealed class CommitCommand(CliConsole console)
{
    public async Task<int> RunAsync(string file, string? formatName, string? baseName, bool drop, bool quiet, CancellationToken cancellationToken)
    {
        var format = await ImageOpening.FormatAsync(console, file, formatName, cancellationToken).ConfigureAwait(false);
        try
        {
            await ImageCommit.CommitAsync(file, format, baseName, drop, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException(e.Message, e);
        }

        if (!quiet)
        {
            await console.Out.WriteLineAsync("Image committed.").ConfigureAwait(false);
        }

        return 0;
    }
}
