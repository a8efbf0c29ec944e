using System.Globalization;
using System.Text;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Measure;

/// <summary>What <c>image measure</c> was asked to do.</summary>
internal sealed record MeasureSettings
{
    public required string Output { get; init; }

    public string? SourceFormat { get; init; }

    public required string TargetFormat { get; init; }

    public IReadOnlyList<string> Options { get; init; } = [];

    public string? Size { get; init; }

    public IReadOnlyList<string> Files { get; init; } = [];
}

/// <summary>Runs <c>image measure</c> with img_measure's checks, messages, output and exit status (0 or 1).</summary>
internal sealed class MeasureCommand(CliConsole console)
{
    private const int Failed = 1;

    public async Task<int> RunAsync(MeasureSettings settings, CancellationToken cancellationToken)
    {
        // img_measure's order: the output mode and the size as options are parsed, then the
        // argument count, then the source is opened, then the target format and its options.
        if (settings.Output is not ("human" or "json"))
        {
            throw new CliException("--output must be used with human or json as argument.");
        }

        ulong? size = null;
        if (settings.Size is not null)
        {
            size = await ParseImageSizeAsync(settings.Size).ConfigureAwait(false);
            if (size is null)
            {
                return Failed;
            }
        }

        if (settings.Files.Count > 1)
        {
            throw new CliException("At most one filename argument is allowed.");
        }

        var file = settings.Files.Count == 1 ? settings.Files[0] : null;
        if (file is null && settings.SourceFormat is not null)
        {
            throw new CliException("--image-opts, -f, and -l require a filename argument.");
        }

        if (file is not null && size is not null)
        {
            throw new CliException("--size N cannot be used together with a filename.");
        }

        if (file is null && size is null)
        {
            throw new CliException("Either --size N or one filename must be specified.");
        }

        IBlockImage? source = null;
        if (file is not null)
        {
            if (!File.Exists(file))
            {
                throw new CliException($"Could not open '{file}': Could not open '{file}': No such file or directory");
            }

            source = await ImageArguments.OpenAsync(file, ImageArguments.ParseFormat(settings.SourceFormat), readOnly: true, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            var measurement = await MeasureAsync(settings, source, size, cancellationToken).ConfigureAwait(false);
            await console.Out.WriteAsync(settings.Output == "json" ? ToJson(measurement) : ToHuman(measurement)).ConfigureAwait(false);
            return 0;
        }
        finally
        {
            if (source is not null)
            {
                await source.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task<ImageMeasurement> MeasureAsync(MeasureSettings settings, IBlockImage? source, ulong? size, CancellationToken cancellationToken)
    {
        var target = settings.TargetFormat switch
        {
            "raw" => ImageFormat.Raw,
            "qcow2" => ImageFormat.Qcow2,
            _ => throw new CliException($"Unknown file format '{settings.TargetFormat}'"),
        };
        var options = MeasureOptions.Parse(settings.Options, target);
        size ??= options.Size;
        try
        {
            if (target == ImageFormat.Raw)
            {
                return ImageMeasure.Raw(source is null ? size ?? 0 : (ulong)source.VirtualSize);
            }

            return source is null
                ? ImageMeasure.Qcow2(size ?? 0, options.Qcow2)
                : await ImageMeasure.Qcow2Async(source, options.Qcow2, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e) when (e.Reason is StorageErrorReason.InvalidRequest or StorageErrorReason.LimitExceeded)
        {
            throw new CliException(e.Message, e);
        }
    }

    /// <summary>cvtnum("image size"): two error lines for a size it cannot parse, as qemu-img prints them.</summary>
    private async Task<ulong?> ParseImageSizeAsync(string text)
    {
        try
        {
            return (ulong)ImageArguments.ParseSize(text, "image size");
        }
        catch (CliException)
        {
            await console.Error.WriteLineAsync("error: Invalid image size specified. You may use k, M, G, T, P or E suffixes for").ConfigureAwait(false);
            await console.Error.WriteLineAsync("error: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.").ConfigureAwait(false);
            return null;
        }
    }

    private static string ToHuman(ImageMeasurement m)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"required size: {m.Required}\n");
        text.Append(CultureInfo.InvariantCulture, $"fully allocated size: {m.FullyAllocated}\n");
        if (m.Bitmaps is { } bitmaps)
        {
            text.Append(CultureInfo.InvariantCulture, $"bitmaps size: {bitmaps}\n");
        }

        return text.ToString();
    }

    /// <summary>BlockMeasureInfo as qemu-img's JSON printer lays it out (QDict order, four-space indent).</summary>
    private static string ToJson(ImageMeasurement m)
    {
        var text = new StringBuilder("{\n");
        if (m.Bitmaps is { } bitmaps)
        {
            text.Append(CultureInfo.InvariantCulture, $"    \"bitmaps\": {bitmaps},\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"    \"required\": {m.Required},\n");
        text.Append(CultureInfo.InvariantCulture, $"    \"fully-allocated\": {m.FullyAllocated}\n");
        text.Append("}\n");
        return text.ToString();
    }
}
