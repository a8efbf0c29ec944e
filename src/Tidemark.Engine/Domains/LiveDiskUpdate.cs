using System.Xml.Linq;

namespace Tidemark.Engine.Domains;

/// <summary>
/// What an update of a running domain's disk may change, in libvirt's rules: its media (the
/// source, with the format and backing chain that come with it) and nothing of the device
/// itself (qemuDomainDiskChangeSupported, virStorageSourceIsSameLocation).
/// </summary>
internal static class LiveDiskUpdate
{
    // qemuDomainDiskChangeSupported's checks of attributes, in its order: the field's name in
    // the error, the element holding it (null: the <disk> itself) and the attribute. Each is
    // "nullable": a document that leaves the attribute out (or says "default") keeps the value.
    private static readonly (string Field, string? Element, string Attribute)[] FixedAttributes =
    [
        ("tray", "target", "tray"),
        ("removable", "target", "removable"),
        ("rotation_rate", "target", "rotation_rate"),
    ];

    private static readonly (string Field, string Element, string Attribute)[] GeometryAttributes =
    [
        ("geometry cylinders", "geometry", "cyls"),
        ("geometry heads", "geometry", "heads"),
        ("geometry sectors", "geometry", "secs"),
        ("BIOS-translation-modus", "geometry", "trans"),
    ];

    private static readonly string[] GeometryNumbers = ["cyls", "heads", "secs"];

    private static readonly string[] BlockSizes = ["logical_block_size", "physical_block_size"];

    private static readonly string[] LocationAttributes = ["file", "dev", "dir", "name", "protocol", "pool", "volume"];

    private static readonly string[] FixedTexts = ["serial", "wwn", "vendor", "product"];

    private static readonly (string Field, string? Element, string Attribute)[] DriverAndDiskAttributes =
    [
        ("cache", "driver", "cache"),
        ("error_policy", "driver", "error_policy"),
        ("rerror_policy", "driver", "rerror_policy"),
        ("io", "driver", "io"),
        ("ioeventfd", "driver", "ioeventfd"),
        ("event_idx", "driver", "event_idx"),
        ("copy_on_read", "driver", "copy_on_read"),
    ];

    private static readonly (string Field, string? Element, string Attribute)[] LaterAttributes =
    [
        ("boot order", "boot", "order"),
        ("rawio", null, "rawio"),
        ("sgio", null, "sgio"),
        ("discard", "driver", "discard"),
        ("iothread", "driver", "iothread"),
        ("backenddomain", "backenddomain", "name"),
    ];

    /// <summary>
    /// The first field <paramref name="updated"/> would change in <paramref name="current"/>
    /// that a running disk cannot change, by the name libvirt's "cannot modify field '%s' of
    /// the disk" gives it; null when the update changes at most its media.
    /// </summary>
    public static string? FixedFieldChanged(XElement updated, XElement current)
    {
        if (Device(updated) != Device(current))
        {
            return "device";
        }

        if (Bus(updated) != Bus(current))
        {
            return "bus";
        }

        foreach (var (field, element, attribute) in FixedAttributes)
        {
            if (NullableChanged(updated, current, element, attribute))
            {
                return field;
            }
        }

        // The geometry counts only when the document gives all three of its numbers.
        if (updated.Element("geometry") is { } geometry && GeometryNumbers.All(a => geometry.Attribute(a) is not null))
        {
            foreach (var (field, element, attribute) in GeometryAttributes)
            {
                if (attribute == "trans" ? NullableChanged(updated, current, element, attribute) : Value(updated, element, attribute) != Value(current, element, attribute))
                {
                    return field;
                }
            }
        }

        // The block sizes are not nullable: leaving them out means the default.
        foreach (var size in BlockSizes)
        {
            if (Value(updated, "blockio", size) != Value(current, "blockio", size))
            {
                return "blockio " + size;
            }
        }

        foreach (var text in FixedTexts)
        {
            if (updated.Element(text)?.Value is { } value && value != current.Element(text)?.Value)
            {
                return text;
            }
        }

        foreach (var (field, element, attribute) in DriverAndDiskAttributes)
        {
            if (NullableChanged(updated, current, element, attribute))
            {
                return field;
            }
        }

        if (updated.Element("transient") is not null && current.Element("transient") is null)
        {
            return "transient";
        }

        // Tidemark gives disks no guest address, so only one the running disk has can differ.
        if (updated.Element("address") is { } address && current.Element("address") is { } had && !XNode.DeepEquals(Normalized(address), Normalized(had)))
        {
            return "address";
        }

        foreach (var (field, element, attribute) in LaterAttributes)
        {
            if (NullableChanged(updated, current, element, attribute))
            {
                return field;
            }
        }

        // "readonly" and "shared" are booleans in libvirt, so only their presence is checked;
        // a CD-ROM is read-only whatever its document says (virDomainDiskDefPostParse).
        if (ReadOnly(updated) && !ReadOnly(current))
        {
            return "readonly";
        }

        return updated.Element("shareable") is not null && current.Element("shareable") is null ? "shared" : null;
    }

    /// <summary>
    /// virStorageSourceIsSameLocation: both without media, or the same kind of source at the
    /// same place. The format is not part of it: an update that names another format for the
    /// same file changes nothing.
    /// </summary>
    public static bool SameLocation(XElement updated, XElement current)
    {
        var (a, b) = (updated.Element("source"), current.Element("source"));
        if (IsEmpty(updated) && IsEmpty(current))
        {
            return true;
        }

        if ((updated.Attribute("type")?.Value ?? "file") != (current.Attribute("type")?.Value ?? "file"))
        {
            return false;
        }

        foreach (var attribute in LocationAttributes)
        {
            if (a?.Attribute(attribute)?.Value != b?.Attribute(attribute)?.Value)
            {
                return false;
            }
        }

        var hosts = (XElement? s) => s?.Elements("host").Select(h => (h.Attribute("name")?.Value, h.Attribute("port")?.Value, h.Attribute("transport")?.Value, h.Attribute("socket")?.Value)).ToList() ?? [];
        return hosts(a).SequenceEqual(hosts(b));
    }

    /// <summary>
    /// The running disk <paramref name="current"/> with the media of <paramref name="updated"/>:
    /// its source (startup policy included), backing chain and format, as
    /// qemuDomainChangeDiskLive takes the new source and keeps the rest of the device.
    /// </summary>
    public static XElement WithMediaOf(XElement current, XElement updated)
    {
        var disk = new XElement(current);
        var anchor = disk.Element("source") ?? disk.Element("backingStore");
        var position = anchor?.PreviousNode;
        disk.Elements("source").Remove();
        disk.Elements("backingStore").Remove();
        var media = updated.Elements("source").Concat(updated.Elements("backingStore")).Select(e => new XElement(e)).ToList();
        if (position is not null)
        {
            position.AddAfterSelf(media);
        }
        else if (disk.Element("driver") is { } driver)
        {
            driver.AddAfterSelf(media);
        }
        else
        {
            disk.AddFirst(media);
        }

        if (updated.Element("driver")?.Attribute("type")?.Value is { } format)
        {
            if (disk.Element("driver") is { } driver)
            {
                driver.SetAttributeValue("type", format);
            }
            else
            {
                disk.AddFirst(new XElement("driver", new XAttribute("name", "qemu"), new XAttribute("type", format)));
            }
        }

        return disk;
    }

    private static bool IsEmpty(XElement disk)
        => (disk.Attribute("type")?.Value ?? "file") is "file" or "block" or "dir"
            && disk.Element("source")?.Attributes().Any(a => a.Name.LocalName is "file" or "dev" or "dir") != true;

    private static string Device(XElement disk) => disk.Attribute("device")?.Value ?? "disk";

    private static string Bus(XElement disk)
    {
        var target = disk.Element("target");
        return target?.Attribute("bus")?.Value ?? DiskAliases.DefaultBus(target?.Attribute("dev")?.Value ?? "", disk.Attribute("device")?.Value);
    }

    private static bool ReadOnly(XElement disk) => disk.Element("readonly") is not null || Device(disk) == "cdrom";

    private static string? Value(XElement disk, string? element, string attribute)
        => (element is null ? disk : disk.Element(element))?.Attribute(attribute)?.Value;

    private static bool NullableChanged(XElement updated, XElement current, string? element, string attribute)
        => Value(updated, element, attribute) is { } value and not "default" && value != Value(current, element, attribute);

    private static XElement Normalized(XElement element)
        => new(element.Name, element.Attributes().OrderBy(a => a.Name.LocalName, StringComparer.Ordinal));
}
