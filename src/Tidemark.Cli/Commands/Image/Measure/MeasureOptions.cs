using System.Globalization;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Measure;

/// <summary>
/// The <c>-o</c> options of <c>image measure</c>, parsed as qemu-img parses them against the
/// target format's creation options (qemu_opts_do_parse over the format's and the file
/// driver's lists): unknown names and malformed values are refused with qemu's words.
/// </summary>
internal sealed record MeasureOptions
{
    private enum Kind
    {
        Size,
        Number,
        Bool,
        Text,
    }

    // The option lists of QEMU 7.2's qcow2 (qcow2_create_opts, without the encryption ones) and
    // raw drivers, each with file-posix's (raw_create_opts of file-posix.c) appended.
    private static readonly Dictionary<string, Kind> FileOptions = new(StringComparer.Ordinal)
    {
        ["size"] = Kind.Size,
        ["preallocation"] = Kind.Text,
        ["nocow"] = Kind.Bool,
        ["extent_size_hint"] = Kind.Size,
    };

    private static readonly Dictionary<string, Kind> Qcow2Options = new(FileOptions, StringComparer.Ordinal)
    {
        ["compat"] = Kind.Text,
        ["backing_file"] = Kind.Text,
        ["backing_fmt"] = Kind.Text,
        ["data_file"] = Kind.Text,
        ["data_file_raw"] = Kind.Bool,
        ["cluster_size"] = Kind.Size,
        ["extended_l2"] = Kind.Bool,
        ["lazy_refcounts"] = Kind.Bool,
        ["refcount_bits"] = Kind.Number,
        ["compression_type"] = Kind.Text,
    };

    public ulong? Size { get; init; }

    public required Qcow2MeasureOptions Qcow2 { get; init; }

    /// <exception cref="CliException">An unknown option or a malformed value (two lines, as qemu-img prints them), or a value qcow2_measure refuses.</exception>
    public static MeasureOptions Parse(IReadOnlyList<string> groups, ImageFormat target)
    {
        var known = target == ImageFormat.Qcow2 ? Qcow2Options : FileOptions;
        var formatName = target.ToName();
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in groups.SelectMany(g => g.Split(',', StringSplitOptions.RemoveEmptyEntries)))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? pair : pair[..eq];
            var value = eq < 0 ? "on" : pair[(eq + 1)..];
            if (!known.TryGetValue(key, out var kind))
            {
                throw Invalid($"Invalid parameter '{key}'", formatName);
            }

            var valid = kind switch
            {
                Kind.Size => TryParseSize(value, out _),
                Kind.Number => ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _),
                Kind.Bool => value is "on" or "off" or "yes" or "no" or "true" or "false",
                _ => true,
            };
            if (!valid)
            {
                throw Invalid(
                    kind switch
                    {
                        Kind.Size => $"Parameter '{key}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.",
                        Kind.Number => $"Parameter '{key}' expects a number",
                        _ => $"Parameter '{key}' expects 'on' or 'off'",
                    },
                    formatName);
            }

            // The last value of an option given twice wins, as qemu_opt_get does.
            values[key] = value;
        }

        var preallocation = values.GetValueOrDefault("preallocation", "off");
        if (preallocation is not ("off" or "metadata" or "falloc" or "full"))
        {
            throw new CliException($"invalid parameter value: {preallocation}");
        }

        var version = values.GetValueOrDefault("compat") switch
        {
            null or "1.1" => 3,
            "0.10" => 2,
            var other => throw new CliException($"Invalid compatibility level: '{other}'"),
        };
        return new MeasureOptions
        {
            Size = values.TryGetValue("size", out var s) && TryParseSize(s, out var size) ? size : null,
            Qcow2 = new Qcow2MeasureOptions
            {
                ClusterSize = values.TryGetValue("cluster_size", out var cs) && TryParseSize(cs, out var clusterSize) ? (int)Math.Min(clusterSize, int.MaxValue) : 1 << 16,
                Version = version,
                RefcountBits = values.TryGetValue("refcount_bits", out var rb) ? (int)Math.Min(ulong.Parse(rb, CultureInfo.InvariantCulture), int.MaxValue) : 16,
                ExtendedL2 = values.GetValueOrDefault("extended_l2") is "on" or "yes" or "true",
                PreallocateData = preallocation is "falloc" or "full",
                HasBackingFile = values.ContainsKey("backing_file"),
            },
        };
    }

    private static bool TryParseSize(string text, out ulong size)
    {
        try
        {
            size = (ulong)ImageArguments.ParseSize(text, "size");
            return true;
        }
        catch (CliException)
        {
            size = 0;
            return false;
        }
    }

    private static CliException Invalid(string what, string formatName)
        => new($"{what}\nerror: Invalid options for file format '{formatName}'");
}
