using System.Globalization;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// What libvirt's QEMU driver checks of a domain's graphics passwords at define
/// (qemuValidateDomainDeviceDefGraphics): VNC's authentication takes at most 8 characters, and
/// a longer password would be cut without a word, so it is refused.
/// </summary>
internal static class GraphicsPasswords
{
    private const int VncMaximum = 8;

    /// <exception cref="EngineException">"VNC password is %zu characters long, only 8 permitted", an unsupported configuration.</exception>
    public static void Check(DomainDefinition definition)
    {
        foreach (var graphics in definition.Element.Element("devices")?.Elements("graphics") ?? [])
        {
            if (graphics.Attribute("type")?.Value == "vnc" && graphics.Attribute("passwd")?.Value is { Length: > VncMaximum } password)
            {
                throw new EngineException(EngineErrorReason.VncPasswordTooLong, string.Create(CultureInfo.InvariantCulture, $"VNC password is {password.Length} characters long, only {VncMaximum} permitted"));
            }
        }
    }
}
