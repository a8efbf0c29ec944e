using System.Xml.Linq;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// What libvirt fills in of a disk it is given (virDomainDiskDefPostParse,
/// qemuDomainDeviceDiskDefPostParse), so a definition reads back as libvirtd's does: the device
/// (<c>device='disk'</c>), the driver's name (<c>qemu</c>) and format (<c>raw</c>), the
/// target's bus (from its name) and a CD-ROM's <c>&lt;readonly/&gt;</c>.
/// </summary>
/// <remarks>
/// The format matters most: an image whose format is not named is raw, never probed, as
/// libvirt has it since format probing let a guest that wrote a qcow2 header into its raw disk
/// name a backing file on the host and read it. (Definitions stored before this default are
/// still probed when opened.)
/// </remarks>
internal static class DiskDefaults
{
    // The elements libvirt writes between <target> and <readonly/> (virDomainDiskDefFormat).
    private static readonly string[] BeforeReadOnly = ["target", "blockio", "geometry", "iotune"];

    /// <summary>The definition with every disk's defaults filled in; the same object when none was missing.</summary>
    public static DomainDefinition Apply(DomainDefinition definition)
    {
        var disks = definition.Element.Element("devices")?.Elements("disk").ToList() ?? [];
        if (disks.All(d => !Lacks(d)))
        {
            return definition;
        }

        var copy = new XElement(definition.Element);
        foreach (var disk in copy.Element("devices")!.Elements("disk"))
        {
            Fill(disk);
        }

        return DomainParser.Parse(copy);
    }

    /// <summary>A copy of the <c>&lt;disk&gt;</c> <paramref name="device"/> with its defaults filled in; any other device as it is.</summary>
    public static XElement Apply(XElement device)
    {
        if (device.Name.LocalName != "disk" || !Lacks(device))
        {
            return device;
        }

        var copy = new XElement(device);
        Fill(copy);
        return copy;
    }

    private static bool Lacks(XElement disk)
        => disk.Attribute("device") is null
            || disk.Element("driver")?.Attribute("name") is null
            || disk.Element("driver")?.Attribute("type") is null
            || disk.Element("target") is { } target && target.Attribute("bus") is null && target.Attribute("dev") is not null
            || disk.Attribute("device")?.Value == "cdrom" && disk.Element("readonly") is null;

    private static void Fill(XElement disk)
    {
        if (disk.Attribute("device") is null)
        {
            // <disk type='file' device='disk'>: the device right after the type.
            var attributes = disk.Attributes().ToList();
            var at = attributes.FindIndex(a => a.Name == "type") + 1;
            disk.ReplaceAttributes(attributes.Take(at), new XAttribute("device", "disk"), attributes.Skip(at));
        }

        var driver = disk.Element("driver");
        if (driver is null)
        {
            driver = new XElement("driver");
            disk.AddFirst(driver);
        }

        // <driver name='qemu' type='raw' …/>: name and type first, in that order.
        var rest = driver.Attributes().Where(a => a.Name != "name" && a.Name != "type").ToList();
        driver.ReplaceAttributes(
            new XAttribute("name", driver.Attribute("name")?.Value ?? "qemu"),
            new XAttribute("type", driver.Attribute("type")?.Value ?? "raw"),
            rest);

        if (disk.Element("target") is { } target && target.Attribute("bus") is null && target.Attribute("dev")?.Value is { } dev)
        {
            var attributes = target.Attributes().ToList();
            var at = attributes.FindIndex(a => a.Name == "dev") + 1;
            target.ReplaceAttributes(attributes.Take(at), new XAttribute("bus", DiskAliases.DefaultBus(dev, disk.Attribute("device")?.Value)), attributes.Skip(at));
        }

        if (disk.Attribute("device")?.Value == "cdrom" && disk.Element("readonly") is null)
        {
            var after = disk.Elements().LastOrDefault(e => BeforeReadOnly.Contains(e.Name.LocalName));
            if (after is not null)
            {
                after.AddAfterSelf(new XElement("readonly"));
            }
            else
            {
                disk.Add(new XElement("readonly"));
            }
        }
    }
}
