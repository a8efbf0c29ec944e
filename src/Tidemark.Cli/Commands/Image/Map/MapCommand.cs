using System.Globalization;
using System.Text;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Map;

/// <summary>
/// Runs <c>image map</c>. JSON entries carry qemu-img map's fields (start, length, depth counted
/// from 0 at the top image, present, zero, data); the host offset is not reported.
/// </summary>
internal sealed class MapCommand(CliConsole console)
{
    public async Task<int> RunAsync(string file, string? format, bool json, CancellationToken cancellationToken)
    {
        var image = await ImageArguments.OpenAsync(file, ImageArguments.ParseFormat(format), readOnly: true, cancellationToken).ConfigureAwait(false);
        var extents = new List<BlockExtent>();
        var chainLength = 1;
        await using (image.ConfigureAwait(false))
        {
            for (var current = image as Storage.Qcow2.Qcow2Image; current?.Backing is not null; current = current.Backing as Storage.Qcow2.Qcow2Image)
            {
                chainLength++;
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
        }

        await console.Out.WriteAsync(json ? ToJson(extents, chainLength) : ToHuman(extents)).ConfigureAwait(false);
        return 0;
    }

    private static string ToJson(List<BlockExtent> extents, int chainLength)
    {
        var text = new StringBuilder("[");
        for (var i = 0; i < extents.Count; i++)
        {
            var e = extents[i];

            // qemu-img's depth: 0 for the top image; for absent ranges, the chain length.
            var depth = e.Depth == 0 ? chainLength - 1 : e.Depth - 1;
            text.Append(i == 0 ? string.Empty : ",\n")
                .Append(CultureInfo.InvariantCulture, $"{{ \"start\": {e.Offset}, \"length\": {e.Length}, \"depth\": {depth}, \"present\": {Bool(e.Depth != 0)}, \"zero\": {Bool((e.Kind & ExtentKind.Zero) != 0)}, \"data\": {Bool((e.Kind & ExtentKind.Hole) == 0)}}}");
        }

        return text.Append("]\n").ToString();
    }

    private static string ToHuman(List<BlockExtent> extents)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{"Offset",-16}{"Length",-16}{"Depth",-8}Status\n");
        foreach (var e in extents)
        {
            var status = (e.Kind & ExtentKind.Hole) == 0 ? "data" : (e.Kind & ExtentKind.Zero) != 0 ? "zero" : "hole";
            text.Append(CultureInfo.InvariantCulture, $"{"0x" + e.Offset.ToString("x", CultureInfo.InvariantCulture),-16}{"0x" + e.Length.ToString("x", CultureInfo.InvariantCulture),-16}{(e.Depth == 0 ? "-" : e.Depth.ToString(CultureInfo.InvariantCulture)),-8}{status}\n");
        }

        return text.ToString();
    }

    private static string Bool(bool value) => value ? "true" : "false";
}
