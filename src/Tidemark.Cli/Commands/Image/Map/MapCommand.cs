using System.Globalization;
using System.Text;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Map;

/// <summary>
/// Runs <c>image map</c>. JSON entries carry qemu-img map's fields (start, length, depth counted
/// from 0 at the top image, present, zero, data, and "offset": where a qcow2 layer stores the range).
/// </summary>
internal sealed class MapCommand(CliConsole console)
{
    public async Task<int> RunAsync(string file, string? format, bool json, CancellationToken cancellationToken)
    {
        var image = await ImageArguments.OpenAsync(file, ImageArguments.ParseFormat(format), readOnly: true, cancellationToken).ConfigureAwait(false);
        var extents = new List<BlockExtent>();
        var mapped = new List<(BlockExtent Extent, long? Offset)>();
        var layers = new List<IBlockImage> { image };
        await using (image.ConfigureAwait(false))
        {
            for (var current = image as Qcow2Image; current?.Backing is not null; current = current.Backing as Qcow2Image)
            {
                layers.Add(current.Backing);
            }

            for (long at = 0; at < image.VirtualSize;)
            {
                var part = await image.GetExtentsAsync(at, image.VirtualSize - at, cancellationToken).ConfigureAwait(false);
                foreach (var e in part)
                {
                    if (extents.Count > 0 && extents[^1].End == e.Offset && extents[^1].Kind == e.Kind && extents[^1].Depth == e.Depth)
                    {
                        extents[^1] = extents[^1] with { Length = extents[^1].Length + e.Length };
                    }
                    else
                    {
                        extents.Add(e);
                    }
                }

                at = part[^1].End;
            }

            foreach (var e in extents)
            {
                switch (e.Depth == 0 ? null : layers[e.Depth - 1])
                {
                    case Qcow2Image layer:
                        await SplitByHostOffsetAsync(e, layer, mapped, cancellationToken).ConfigureAwait(false);
                        break;
                    case RawImage:
                        // A raw file stores every guest byte at its own offset, holes included.
                        Append(mapped, e, e.Offset);
                        break;
                    default:
                        mapped.Add((e, null));
                        break;
                }
            }
        }

        if (json)
        {
            await console.Out.WriteAsync(ToJson(mapped, layers.Count)).ConfigureAwait(false);
            return 0;
        }

        // qemu-img's human format has no place for data it cannot point at in a file; like
        // qemu-img, the header is out before the error.
        if (mapped.Exists(m => (m.Extent.Kind & ExtentKind.Hole) == 0 && m.Offset is null))
        {
            await console.Out.WriteAsync(HumanHeader).ConfigureAwait(false);
            throw new CliException("File contains external, encrypted or compressed clusters.");
        }

        await console.Out.WriteAsync(ToHuman(mapped, LayerNames(file, layers))).ConfigureAwait(false);
        return 0;
    }

    /// <summary>qemu-img map splits where the host offset jumps; do the same.</summary>
    private static async Task SplitByHostOffsetAsync(BlockExtent extent, Qcow2Image layer, List<(BlockExtent Extent, long? Offset)> mapped, CancellationToken cancellationToken)
    {
        foreach (var run in await layer.GetHostRunsAsync(extent.Offset, extent.Length, cancellationToken).ConfigureAwait(false))
        {
            Append(mapped, new BlockExtent(run.Offset, run.Length, extent.Kind, extent.Depth), run.Host);
        }
    }

    /// <summary>Adds a range, joined to the previous one when kind, layer and host offsets continue it.</summary>
    private static void Append(List<(BlockExtent Extent, long? Offset)> mapped, BlockExtent extent, long? host)
    {
        if (mapped.Count > 0 && mapped[^1].Extent.End == extent.Offset && mapped[^1].Extent.Kind == extent.Kind && mapped[^1].Extent.Depth == extent.Depth
            && (host is null ? mapped[^1].Offset is null : mapped[^1].Offset + mapped[^1].Extent.Length == host))
        {
            mapped[^1] = (mapped[^1].Extent with { Length = mapped[^1].Extent.Length + extent.Length }, mapped[^1].Offset);
        }
        else
        {
            mapped.Add((extent, host));
        }
    }

    private static string ToJson(List<(BlockExtent Extent, long? Offset)> extents, int chainLength)
    {
        var text = new StringBuilder("[");
        for (var i = 0; i < extents.Count; i++)
        {
            var (e, offset) = extents[i];

            // qemu-img's depth: 0 for the top image; for absent ranges, the chain length.
            var depth = e.Depth == 0 ? chainLength - 1 : e.Depth - 1;
            text.Append(i == 0 ? string.Empty : ",\n")
                .Append(CultureInfo.InvariantCulture, $"{{ \"start\": {e.Offset}, \"length\": {e.Length}, \"depth\": {depth}, \"present\": {Bool(e.Depth != 0)}, \"zero\": {Bool((e.Kind & ExtentKind.Zero) != 0)}, \"data\": {Bool((e.Kind & ExtentKind.Hole) == 0)}");
            if (offset is { } host)
            {
                text.Append(CultureInfo.InvariantCulture, $", \"offset\": {host}");
            }

            text.Append('}');
        }

        return text.Append("]\n").ToString();
    }

    private const string HumanHeader = "Offset          Length          Mapped to       File\n";

    /// <summary>
    /// qemu-img map's human format (dump_map_entry, OFORMAT_HUMAN): only ranges holding data,
    /// with where they lie and in which file; zeroes and holes are left out.
    /// </summary>
    private static string ToHuman(List<(BlockExtent Extent, long? Offset)> extents, List<string> names)
    {
        var text = new StringBuilder(HumanHeader);
        foreach (var (e, offset) in extents)
        {
            if ((e.Kind & (ExtentKind.Hole | ExtentKind.Zero)) != 0 || e.Depth == 0)
            {
                continue;
            }

            text.Append(CultureInfo.InvariantCulture, $"{Hex(e.Offset),-16}{Hex(e.Length),-16}{Hex(offset ?? 0),-16}{names[e.Depth - 1]}\n");
        }

        return text.ToString();
    }

    /// <summary>
    /// Each layer's file as qemu-img names it: the top as given, a relative backing file name
    /// joined to the directory part of the name of the image that names it (QEMU's path_combine).
    /// </summary>
    private static List<string> LayerNames(string file, List<IBlockImage> layers)
    {
        var names = new List<string> { file };
        for (var i = 1; i < layers.Count; i++)
        {
            var backing = (layers[i - 1] as Qcow2Image)?.BackingFileName ?? string.Empty;
            var above = names[i - 1];
            names.Add(backing.StartsWith('/') ? backing : above[..(above.LastIndexOf('/') + 1)] + backing);
        }

        return names;
    }

    /// <summary>printf's <c>%#x</c>: 0x before every value but zero.</summary>
    private static string Hex(long value) => value == 0 ? "0" : "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static string Bool(bool value) => value ? "true" : "false";
}
