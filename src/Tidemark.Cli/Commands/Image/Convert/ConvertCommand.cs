using Tidemark.Cli.Commands.Image.Create;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Cli.Commands.Image.Convert;

/// <summary>What <c>image convert</c> was asked to do.</summary>
internal sealed record ConvertSettings
{
    public required string Source { get; init; }

    public string? SourceFormat { get; init; }

    public required string Target { get; init; }

    public required string TargetFormat { get; init; }

    public bool Compress { get; init; }

    public CacheMode Cache { get; init; }

    public IReadOnlyList<string> Options { get; init; } = [];

    /// <summary>-B: the target's backing file; only what differs from it is written.</summary>
    public string? Backing { get; init; }

    /// <summary>-F: the backing file's format.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>-n: the target exists and is not created.</summary>
    public bool SkipCreate { get; init; }

    /// <summary>--target-is-zero: the existing target reads as zeroes (with -n).</summary>
    public bool TargetIsZero { get; init; }

    /// <summary>--bitmaps: copy persistent bitmaps.</summary>
    public bool Bitmaps { get; init; }

    /// <summary>--skip-broken-bitmaps: leave inconsistent bitmaps out instead of refusing.</summary>
    public bool SkipBrokenBitmaps { get; init; }
}

/// <summary>Runs <c>image convert</c> with img_convert's checks and messages.</summary>
internal sealed class ConvertCommand(CliConsole console)
{
    public async Task<int> RunAsync(ConvertSettings settings, CancellationToken cancellationToken)
    {
        var targetFormat = ImageArguments.ParseFormat(settings.TargetFormat)!.Value;
        CheckOptions(settings, targetFormat);
        if (Path.GetFullPath(settings.Source) == Path.GetFullPath(settings.Target))
        {
            throw new CliException("The source and the target are the same file");
        }

        var source = await ImageArguments.OpenAsync(settings.Source, ImageArguments.ParseFormat(settings.SourceFormat), readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (source.ConfigureAwait(false))
        {
            if (settings.Bitmaps)
            {
                Check(() => BitmapCopy.CheckSource(source as Qcow2Image ?? throw new StorageException(StorageErrorReason.InvalidRequest, "Source lacks bitmap support"), settings.SkipBrokenBitmaps));
            }

            if (!settings.SkipCreate)
            {
                var created = await new CreateCommand(new CliConsole(TextWriter.Null, console.Error)).RunAsync(
                    new CreateSettings
                    {
                        Format = targetFormat.ToName(),
                        Options = settings.Options,
                        File = settings.Target,
                        Size = source.VirtualSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        Backing = settings.Backing,
                        BackingFormat = settings.BackingFormat,
                    },
                    cancellationToken).ConfigureAwait(false);
                if (created != 0)
                {
                    return created;
                }
            }
            else if (!File.Exists(settings.Target))
            {
                throw new CliException($"Could not open '{settings.Target}': Could not open '{settings.Target}': No such file or directory");
            }

            var target = await ImageArguments.OpenAsync(settings.Target, targetFormat, readOnly: false, cancellationToken).ConfigureAwait(false);
            await using (target.ConfigureAwait(false))
            {
                await CopyAsync(settings, targetFormat, source, target, cancellationToken).ConfigureAwait(false);
            }
        }

        return 0;
    }

    /// <summary>img_convert's checks of the option combination, before any file is opened.</summary>
    private static void CheckOptions(ConvertSettings settings, ImageFormat targetFormat)
    {
        if (settings.TargetIsZero && !settings.SkipCreate)
        {
            throw new CliException("--target-is-zero requires use of -n flag");
        }

        if (settings.SkipBrokenBitmaps && !settings.Bitmaps)
        {
            throw new CliException("--skip-broken-bitmaps requires --bitmaps");
        }

        if (settings.Compress && targetFormat != ImageFormat.Qcow2)
        {
            throw new CliException("Compression is only supported for qcow2 targets (-O qcow2)");
        }

        if (settings.Backing is not null)
        {
            if (settings.TargetIsZero)
            {
                throw new CliException("Cannot use --target-is-zero when the destination image has a backing file");
            }

            if (targetFormat != ImageFormat.Qcow2)
            {
                throw new CliException($"Backing file not supported for file format '{targetFormat.ToName()}'");
            }

            if (settings.BackingFormat is null && !settings.SkipCreate)
            {
                throw new CliException("Use of backing file requires explicit backing format");
            }

            if (settings.Compress)
            {
                throw new CliException("Compression is not supported with a backing file (-B)");
            }
        }
    }

    private async Task CopyAsync(ConvertSettings settings, ImageFormat targetFormat, IBlockImage source, IBlockImage target, CancellationToken cancellationToken)
    {
        // -t writeback fsyncs the target at the end: stream it to the disk meanwhile. The
        // default (unsafe, as qemu-img) leaves the data to the page cache and never waits for it.
        var writeBehind = settings.Cache == CacheMode.Writeback;
        switch (target)
        {
            case Qcow2Image q:
                q.CacheMode = settings.Cache;
                q.WriteBehind = writeBehind;
                break;
            case RawImage r:
                r.CacheMode = settings.Cache;
                r.WriteBehind = writeBehind;
                break;
        }

        if (settings.Bitmaps)
        {
            Check(() => BitmapCopy.CheckTarget(target));
        }

        if (target.VirtualSize < source.VirtualSize)
        {
            throw new CliException("output file is smaller than input file");
        }

        try
        {
            if (settings.Backing is not null)
            {
                await DifferenceCopy.CopyAsync(source, target, SharesBacking(source, target), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await SparseCopy.CopyAsync(source, target, settings.Compress, targetReadsZeroes: !settings.SkipCreate || settings.TargetIsZero, cancellationToken).ConfigureAwait(false);
            }

            if (settings.Bitmaps)
            {
                var skipped = await BitmapCopy.CopyAsync((Qcow2Image)source, (Qcow2Image)target, settings.SkipBrokenBitmaps, cancellationToken).ConfigureAwait(false);
                foreach (var name in skipped)
                {
                    await console.Error.WriteLineAsync($"warning: Skipping inconsistent bitmap '{name}'").ConfigureAwait(false);
                }
            }

            await target.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException($"error while converting {targetFormat.ToName()}: {e.Message}", e);
        }
    }

    /// <summary>The source's top image sits on the very file the target reads through (convert -B onto the source's own backing file).</summary>
    private static bool SharesBacking(IBlockImage source, IBlockImage target)
    {
        var sourceBacking = DiskImage.PathOf((source as Qcow2Image)?.Backing);
        var targetBacking = DiskImage.PathOf((target as Qcow2Image)?.Backing);
        return sourceBacking is not null && targetBacking is not null && DiskImage.RealPath(sourceBacking) == DiskImage.RealPath(targetBacking);
    }

    private static void Check(Action check)
    {
        try
        {
            check();
        }
        catch (StorageException e)
        {
            throw new CliException(e.Message, e);
        }
    }
}
