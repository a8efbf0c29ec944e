using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image;

/// <summary>What qemu-img's img_open says before a verb touches an image: a missing file, and the warning for a probed raw image.</summary>
internal static class ImageOpening
{
    /// <summary>The format given with -f, or probed with qemu-img's warning when that guesses raw.</summary>
    /// <exception cref="CliException">The file does not exist, or the format name is unknown.</exception>
    public static async Task<ImageFormat> FormatAsync(CliConsole console, string file, string? formatName, CancellationToken cancellationToken)
    {
        if (!File.Exists(file))
        {
            throw new CliException($"Could not open '{file}': Could not open '{file}': No such file or directory");
        }

        var format = ImageArguments.ParseFormat(formatName);
        if (format is not null)
        {
            return format.Value;
        }

        var probed = await DiskImage.ProbeAsync(file, cancellationToken).ConfigureAwait(false);
        if (probed == ImageFormat.Raw)
        {
            await console.Error.WriteLineAsync($"WARNING: Image format was not specified for '{file}' and probing guessed raw.\n         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         Specify the 'raw' format explicitly to remove the restrictions.").ConfigureAwait(false);
        }

        return probed;
    }
}
