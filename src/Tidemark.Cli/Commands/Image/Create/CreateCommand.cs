using System.Globalization;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Create;

/// <summary>Runs <c>image create</c>.</summary>
internal sealed class CreateCommand(CliConsole console)
{
    public async Task<int> RunAsync(CreateSettings settings, CancellationToken cancellationToken)
    {
        var format = ImageArguments.ParseFormat(settings.Format)!.Value;
        var backingFormat = ImageArguments.ParseFormat(settings.BackingFormat);
        if (settings.Backing is null && backingFormat is not null)
        {
            throw new CliException("-F needs a backing file (-b)");
        }

        long size;
        if (settings.Size is not null)
        {
            size = ImageArguments.ParseSize(settings.Size, "image size");
        }
        else if (settings.Backing is not null)
        {
            var backingPath = DiskImage.ResolveBackingPath(settings.File, settings.Backing);
            var backing = await ImageArguments.OpenAsync(backingPath, backingFormat, readOnly: true, cancellationToken).ConfigureAwait(false);
            await using (backing.ConfigureAwait(false))
            {
                size = backing.VirtualSize;
                backingFormat ??= backing is Qcow2Image ? ImageFormat.Qcow2 : ImageFormat.Raw;
            }
        }
        else
        {
            throw new CliException("Image creation needs a size parameter");
        }

        if (format == ImageFormat.Raw)
        {
            if (settings.Backing is not null || settings.Options.Count > 0)
            {
                throw new CliException("raw images take no backing file and no -o options");
            }

            try
            {
                await using (RawImage.Create(settings.File, size).ConfigureAwait(false))
                {
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw CannotCreate(settings.File, e);
            }

            await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Formatting '{settings.File}', fmt=raw size={size}")).ConfigureAwait(false);
            return 0;
        }

        var options = ParseOptions(settings.Options) with { Size = size, BackingFile = settings.Backing, BackingFormat = settings.Backing is null ? null : backingFormat };
        if (settings.Backing is not null && options.BackingFormat is null)
        {
            // Record the probed format as QEMU 7.2 requires (-F is mandatory there).
            var backingPath = DiskImage.ResolveBackingPath(settings.File, settings.Backing);
            if (!File.Exists(backingPath))
            {
                throw new CliException($"Could not open backing file '{settings.Backing}': No such file or directory");
            }

            options = options with { BackingFormat = await DiskImage.ProbeAsync(backingPath, cancellationToken).ConfigureAwait(false) };
        }

        try
        {
            await using (await Qcow2Image.CreateAsync(settings.File, options, cancellationToken).ConfigureAwait(false))
            {
            }
        }
        catch (StorageException e)
        {
            throw new CliException(e.Message, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CannotCreate(settings.File, e);
        }

        var line = string.Create(CultureInfo.InvariantCulture, $"Formatting '{settings.File}', fmt=qcow2 cluster_size={options.ClusterSize} extended_l2=off compression_type={(options.Zstd ? "zstd" : "zlib")} size={size}");
        if (options.BackingFile is not null)
        {
            line += $" backing_file={options.BackingFile} backing_fmt={options.BackingFormat?.ToName()}";
        }

        await console.Out.WriteLineAsync(line + string.Create(CultureInfo.InvariantCulture, $" lazy_refcounts=off refcount_bits={options.RefcountBits}")).ConfigureAwait(false);
        return 0;
    }

    /// <summary>qemu-img's words for a file that cannot be created or written ("FILE: Could not create 'FILE': strerror").</summary>
    private static CliException CannotCreate(string file, Exception e) => new($"{file}: Could not create '{file}': {HostErrno.Describe(e)}", e);

    private static Qcow2CreateOptions ParseOptions(IReadOnlyList<string> groups)
    {
        var options = new Qcow2CreateOptions { Size = 0 };
        foreach (var pair in groups.SelectMany(g => g.Split(',', StringSplitOptions.RemoveEmptyEntries)))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? pair : pair[..eq];
            var value = eq < 0 ? string.Empty : pair[(eq + 1)..];
            options = key switch
            {
                "cluster_size" => options with { ClusterSize = (int)Math.Min(int.MaxValue, ImageArguments.ParseSize(value, "cluster_size")) },
                "compat" => options with
                {
                    Version = value switch
                    {
                        "1.1" or "v3" => 3,
                        "0.10" or "v2" => 2,
                        _ => throw new CliException($"Invalid compat version '{value}' (1.1 or 0.10)"),
                    },
                },
                "refcount_bits" => options with { RefcountBits = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var bits) ? bits : throw new CliException($"Invalid refcount_bits '{value}'") },
                "compression_type" => options with
                {
                    Zstd = value switch
                    {
                        "zlib" => false,
                        "zstd" => true,
                        _ => throw new CliException($"Invalid compression_type '{value}' (zlib or zstd)"),
                    },
                },
                _ => throw new CliException($"Invalid option '{key}' for format qcow2 (supported: cluster_size, compat, refcount_bits, compression_type)"),
            };
        }

        return options;
    }
}
