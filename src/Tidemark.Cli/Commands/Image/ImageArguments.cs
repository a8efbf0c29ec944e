using System.Globalization;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image;

/// <summary>Parsing shared by the image commands: sizes with qemu-img suffixes and format names.</summary>
internal static class ImageArguments
{
    /// <summary>
    /// A size as qemu-img takes it: bytes, or a number with a suffix k, M, G, T, P, E (powers of
    /// 1024, either case) or b (bytes).
    /// </summary>
    /// <exception cref="CliException">Not a size; the message quotes it.</exception>
    public static long ParseSize(string text, string what)
    {
        var s = text.Trim();
        long multiplier = 1;
        if (s.Length > 0 && char.IsLetter(s[^1]))
        {
            multiplier = char.ToUpperInvariant(s[^1]) switch
            {
                'B' => 1,
                'K' => 1L << 10,
                'M' => 1L << 20,
                'G' => 1L << 30,
                'T' => 1L << 40,
                'P' => 1L << 50,
                'E' => 1L << 60,
                _ => 0,
            };
            s = s[..^1];
        }

        if (multiplier == 0 || !decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value < 0)
        {
            throw new CliException($"Invalid {what} '{text}': use a number of bytes or a number with a suffix k, M, G, T, P, E");
        }

        var bytes = value * multiplier;
        if (bytes > long.MaxValue || bytes != decimal.Truncate(bytes))
        {
            throw new CliException($"Invalid {what} '{text}': not a whole number of bytes that fits in 63 bits");
        }

        return (long)bytes;
    }

    /// <summary>"raw" or "qcow2", or null when <paramref name="name"/> is null.</summary>
    public static ImageFormat? ParseFormat(string? name)
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
            throw new CliException(e.Message, e);
        }
    }

    /// <summary>Opens an image, turning storage refusals into user errors.</summary>
    public static Task<IBlockImage> OpenAsync(string path, ImageFormat? format, bool readOnly, CancellationToken cancellationToken)
        => OpenAsync(path, () => DiskImage.OpenAsync(path, format, readOnly, cancellationToken));

    /// <summary>Opens an image read-only without its backing chain (qemu-img info's open), turning storage refusals into user errors.</summary>
    public static Task<IBlockImage> OpenWithoutBackingAsync(string path, ImageFormat? format, CancellationToken cancellationToken)
        => OpenAsync(path, () => DiskImage.OpenWithoutBackingAsync(path, format, cancellationToken));

    private static async Task<IBlockImage> OpenAsync(string path, Func<ValueTask<IBlockImage>> open)
    {
        try
        {
            return await open().ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException($"Could not open '{path}': {e.Message}", e);
        }
        catch (FileNotFoundException e)
        {
            throw new CliException($"Could not open '{path}': No such file or directory", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CliException($"Could not open '{path}': Permission denied", e);
        }
    }

    /// <summary>"64 MiB" as qemu-img prints sizes.</summary>
    public static string HumanSize(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        double value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes} B") : string.Create(CultureInfo.InvariantCulture, $"{value:G3} {units[unit]}");
    }
}
