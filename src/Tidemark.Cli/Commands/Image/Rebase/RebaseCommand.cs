using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Rebase;

/// <summary>What <c>image rebase</c> was asked to do.</summary>
internal sealed record RebaseSettings
{
    public required string File { get; init; }

    public string? Format { get; init; }

    public string? Backing { get; init; }

    public string? BackingFormat { get; init; }

    public bool Unsafe { get; init; }
}

/// <summary>Runs <c>image rebase</c> with img_rebase's checks, messages and exit status (0 or 1).</summary>
internal sealed class RebaseCommand(CliConsole console)
{
    public async Task<int> RunAsync(RebaseSettings settings, CancellationToken cancellationToken)
    {
        if (!settings.Unsafe && settings.Backing is null)
        {
            throw new CliException("Must specify backing file (-b) or use unsafe mode (-u)");
        }

        var backingFormat = ParseFormatName(settings.BackingFormat);
        var format = await ImageOpening.FormatAsync(console, settings.File, settings.Format, cancellationToken).ConfigureAwait(false);
        try
        {
            await ImageRebase.RebaseAsync(settings.File, format, settings.Backing ?? string.Empty, backingFormat, safe: !settings.Unsafe, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException(e.Message, e);
        }

        return 0;
    }

    /// <summary>img_rebase checks -F against the known drivers before anything else is opened.</summary>
    private static ImageFormat? ParseFormatName(string? name)
    {
        if (name is null)
        {
            return null;
        }

        try
        {
            return ImageFormatNames.Parse(name);
        }
        catch (StorageException e)
        {
            throw new CliException($"Invalid format name: '{name}'", e);
        }
    }
}
