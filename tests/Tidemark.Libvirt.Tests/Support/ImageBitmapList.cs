using System.Text;
using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// The persistent bitmaps of a qcow2 image as <c>qemu-img info</c> reports them, by name, each
/// with its flags and granularity (<c>c1[auto]/65536 c2[in-use,auto]/65536</c>), or "none". The
/// order of the bitmap directory is left out: nothing reads it.
/// </summary>
internal static class ImageBitmapList
{
    public static async Task<string> DescribeAsync(string image)
    {
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "-U", "-f", "qcow2", image);
        using var json = JsonDocument.Parse(info);
        if (!json.RootElement.GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out var bitmaps))
        {
            return "none";
        }

        var text = new StringBuilder();
        foreach (var bitmap in bitmaps.EnumerateArray().OrderBy(b => b.GetProperty("name").GetString(), StringComparer.Ordinal))
        {
            var flags = string.Join(',', bitmap.GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
            text.Append($"{bitmap.GetProperty("name").GetString()}[{flags}]/{bitmap.GetProperty("granularity").GetInt64()} ");
        }

        return text.ToString().TrimEnd();
    }
}
