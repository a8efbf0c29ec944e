using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>What qemu-img says about an image's persistent bitmaps.</summary>
public static class ImageBitmaps
{
    /// <summary>The bitmap names <c>qemu-img info --output=json</c> lists, sorted (-U: a domain may hold the image open).</summary>
    public static async Task<string[]> NamesAsync(string image)
    {
        using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "-U", "--output=json", image));
        return info.RootElement.TryGetProperty("format-specific", out var specific)
            && specific.GetProperty("data").TryGetProperty("bitmaps", out var bitmaps)
            ? [.. bitmaps.EnumerateArray().Select(b => b.GetProperty("name").GetString()!).Order(StringComparer.Ordinal)]
            : [];
    }
}
