using System.Xml.Linq;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// A disk source's <c>startupPolicy</c> at a start, as libvirt's qemuDomainCheckDiskStartupPolicy
/// applies it when the file is missing: <c>optional</c> drops it (a CD-ROM or floppy starts
/// empty; a disk leaves the running domain), <c>requisite</c> and <c>mandatory</c> fail the
/// start. The running definition shows what was dropped; the domain's own keeps it.
/// </summary>
internal static class StartupPolicies
{
    /// <summary>The running definition once missing optional sources are dropped; the same object when none is.</summary>
    /// <exception cref="EngineException">A requisite or mandatory source is missing: "Cannot access storage file '%s': No such file or directory", a system error.</exception>
    public static DomainDefinition Apply(DomainDefinition definition)
    {
        var missing = (definition.Element.Element("devices")?.Elements("disk") ?? []).Where(IsMissing).ToList();
        if (missing.Count == 0)
        {
            return definition;
        }

        var live = new XElement(definition.Element);
        foreach (var disk in live.Element("devices")!.Elements("disk").Where(IsMissing).ToList())
        {
            var source = disk.Element("source")!;
            var path = source.Attribute("file")!.Value;
            if (source.Attribute("startupPolicy")!.Value != "optional")
            {
                throw new EngineException(EngineErrorReason.ImageInaccessible, $"Cannot access storage file '{path}': No such file or directory");
            }

            if (disk.Attribute("device")?.Value is "cdrom" or "floppy")
            {
                source.Remove();
                disk.Element("driver")?.Attribute("type")?.Remove();
            }
            else
            {
                disk.Remove();
            }
        }

        return DomainParser.Parse(live);
    }

    // A file source with a startup policy whose file is not there.
    private static bool IsMissing(XElement disk)
        => (disk.Attribute("type")?.Value ?? "file") == "file"
            && disk.Element("source") is { } source
            && source.Attribute("startupPolicy") is not null
            && source.Attribute("file")?.Value is { Length: > 0 } path
            && !File.Exists(path);
}
