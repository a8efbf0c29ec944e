using System.Text.RegularExpressions;

namespace Tidemark.Engine.Disks;

/// <summary>
/// QEMU's own words for an image lock conflict ("Failed to get "write" lock", "Failed to get
/// shared "write" lock"), which libvirt passes on after the QEMU command that met it, taken
/// from a storage error's message (<c>PATH: Failed to get "write" lock: is another process
/// using the image?</c>).
/// </summary>
internal static partial class LockConflict
{
    /// <summary>QEMU's words within <paramref name="message"/>, or <paramref name="fallback"/> when it has none.</summary>
    public static string QemuWords(string message, string fallback)
        => Words().Match(message) is { Success: true } m ? m.Value : fallback;

    [GeneratedRegex("Failed to get (shared )?\"[a-z ]+\" lock")]
    private static partial Regex Words();
}
