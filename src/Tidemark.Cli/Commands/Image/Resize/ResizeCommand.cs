using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Resize;

/// <summary>Runs <c>image resize</c> with qemu-img resize's checks, messages and exit status (0 or 1).</summary>
internal sealed class ResizeCommand(CliConsole console)
{
    private const int Failed = 1;

    public async Task<int> RunAsync(string file, string sizeText, string? formatName, bool shrink, CancellationToken cancellationToken)
    {
        var (sign, magnitude) = ParseSize(sizeText);
        if (!File.Exists(file))
        {
            throw new CliException($"Could not open '{file}': Could not open '{file}': No such file or directory");
        }

        var format = ImageArguments.ParseFormat(formatName);
        if (format is null)
        {
            format = await DiskImage.ProbeAsync(file, cancellationToken).ConfigureAwait(false);
            if (format == ImageFormat.Raw)
            {
                await console.Error.WriteLineAsync($"WARNING: Image format was not specified for '{file}' and probing guessed raw.\n         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         Specify the 'raw' format explicitly to remove the restrictions.").ConfigureAwait(false);
            }
        }

        return format == ImageFormat.Raw
            ? await ResizeRawAsync(file, sign, magnitude, shrink, cancellationToken).ConfigureAwait(false)
            : await ResizeQcow2Async(file, sign, magnitude, shrink, cancellationToken).ConfigureAwait(false);
    }

    private async Task<int> ResizeRawAsync(string file, int sign, long magnitude, bool shrink, CancellationToken cancellationToken)
    {
        // QEMU's block layer sees a raw file in whole sectors (DiskSize), so a relative size starts from there.
        var current = DiskSize.RoundUp(DiskImage.FileLength(file));
        var target = await CheckTargetAsync(current, sign, magnitude, shrink).ConfigureAwait(false);
        if (target is null)
        {
            return Failed;
        }

        try
        {
            await RawImage.ResizeAsync(file, target.Value, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            // A block device that would have to grow says so itself; a lock is an open's failure.
            throw new CliException(e.Reason == StorageErrorReason.InvalidRequest ? e.Message : $"Could not open '{file}': {e.Message}", e);
        }

        await console.Out.WriteLineAsync("Image resized.").ConfigureAwait(false);
        return 0;
    }

    private async Task<int> ResizeQcow2Async(string file, int sign, long magnitude, bool shrink, CancellationToken cancellationToken)
    {
        Qcow2Image image;
        try
        {
            image = await Qcow2Image.OpenAsync(file, readOnly: false, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException($"Could not open '{file}': {e.Message}", e);
        }

        await using (image.ConfigureAwait(false))
        {
            var target = await CheckTargetAsync(image.VirtualSize, sign, magnitude, shrink).ConfigureAwait(false);
            if (target is null)
            {
                return Failed;
            }

            try
            {
                await image.ResizeAsync(target.Value, cancellationToken).ConfigureAwait(false);
            }
            catch (StorageException e)
            {
                throw new CliException(e.Message, e);
            }
        }

        await console.Out.WriteLineAsync("Image resized.").ConfigureAwait(false);
        return 0;
    }

    /// <summary>img_resize's checks on the new size: positive, and smaller only with --shrink.</summary>
    private async Task<long?> CheckTargetAsync(long current, int sign, long magnitude, bool shrink)
    {
        var target = sign switch
        {
            > 0 => magnitude > long.MaxValue - current ? throw new CliException("Image size too large") : current + magnitude,
            < 0 => current - magnitude,
            _ => magnitude,
        };
        if (target <= 0)
        {
            throw new CliException("New image size must be positive");
        }

        if (target < current && !shrink)
        {
            await console.Error.WriteLineAsync("error: Use the --shrink option to perform a shrink operation.").ConfigureAwait(false);
            await console.Error.WriteLineAsync("warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.").ConfigureAwait(false);
            return null;
        }

        return target;
    }

    /// <summary>"+1G" → (+1, 1 GiB), "-512" → (-1, 512), "4G" → (0, 4 GiB).</summary>
    private static (int Sign, long Magnitude) ParseSize(string text)
    {
        var sign = text.StartsWith('+') ? 1 : text.StartsWith('-') ? -1 : 0;
        var digits = sign == 0 ? text : text[1..];
        try
        {
            return (sign, ImageArguments.ParseSize(digits, "size"));
        }
        catch (CliException e)
        {
            // qemu-img's words for a size it cannot parse.
            throw new CliException("Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.", e);
        }
    }
}
