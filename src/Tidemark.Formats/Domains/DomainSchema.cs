using System.Xml.Linq;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Domains;

/// <summary>
/// The rules of libvirt's <c>domain.rng</c> for the part of a domain that Tidemark models: the
/// root's <c>type</c>, <c>&lt;name&gt;</c>, <c>&lt;uuid&gt;</c>, the sizes <c>&lt;memory&gt;</c>,
/// <c>&lt;maxMemory&gt;</c> and <c>&lt;currentMemory&gt;</c> (<c>scaledInteger</c>), and for each
/// <c>&lt;devices&gt;&lt;disk&gt;</c> its type and device, <c>&lt;driver&gt;</c> name and type,
/// <c>&lt;source&gt;</c> path, <c>&lt;target&gt;</c> dev and bus, and <c>&lt;readonly/&gt;</c>.
/// </summary>
/// <remarks>
/// Not checked (the full schema is some 9,000 lines): every other element and attribute of a
/// domain (CPU, OS, clock, features, the other devices, addresses, seclabels, disk
/// encryption and auth, network-disk hosts, the contents of backingStore), and the element order
/// rules. Such content is kept verbatim, so a domain that libvirt refuses for those reasons is
/// accepted here; it fails when libvirt itself reads it back.
/// </remarks>
internal static class DomainSchema
{
    private static readonly string[] HypervisorTypes =
        ["qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox", "phyp", "vz", "bhyve", "hvf"];

    private static readonly string[] Buses = ["ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd"];

    public static void Check(XElement domain, SchemaReport report)
    {
        if (report.Required(domain, "type") is { } type)
        {
            report.OneOf(type, HypervisorTypes);
        }

        if (domain.Attribute("id") is { } id)
        {
            report.Check(id, id.Value, SchemaTypes.IsUnsignedInt, "unsignedInt");
        }

        var name = report.AtMostOne(domain, "name");
        if (name is null)
        {
            report.Add(domain, "missing required element <name>");
        }
        else
        {
            report.Check(name, report.TextOnly(name), SchemaTypes.IsDomainName, "domain name");
        }

        if (report.AtMostOne(domain, "uuid") is { } uuid)
        {
            report.Check(uuid, report.TextOnly(uuid), SchemaTypes.IsUuid, "UUID");
        }

        CheckScaledInteger(report.AtMostOne(domain, "memory"), report, "dumpCore");
        CheckScaledInteger(report.AtMostOne(domain, "maxMemory"), report, "slots");
        CheckScaledInteger(report.AtMostOne(domain, "currentMemory"), report);

        if (report.AtMostOne(domain, "devices") is { } devices)
        {
            foreach (var disk in devices.Elements("disk"))
            {
                CheckDisk(disk, report);
            }
        }
    }

    // basictypes.rng scaledInteger: an optional unit and an unsignedLong of ASCII digits only, so
    // '-1', '0x10', an Arabic-Indic digit, a value past 2^64-1 and an empty element are all
    // refused (as xmllint --relaxng refuses them). The parser's further check, that the value
    // times its unit fits in 2^63 bytes, is not made here.
    private static void CheckScaledInteger(XElement? element, SchemaReport report, params string[] otherAttributes)
    {
        if (element is null)
        {
            return;
        }

        report.AllowAttributes(element, ["unit", .. otherAttributes]);
        foreach (var child in element.Elements())
        {
            report.Add(child, $"element not allowed in <{element.Name.LocalName}>, which holds text only");
        }

        if (element.Attribute("unit") is { } unit)
        {
            report.Check(unit, unit.Value, SchemaTypes.IsUnit, "unit");
        }

        report.Check(element, element.Value, SchemaTypes.IsUnsignedLong, "unsignedLong");
    }

    private static void CheckDisk(XElement disk, SchemaReport report)
    {
        var type = DiskSourceType.File;
        if (disk.Attribute("type") is { } typeAttribute)
        {
            report.OneOf(typeAttribute, [.. DomainDiskNames.SourceTypes.Names]);
            type = DomainDiskNames.SourceTypes.Parse(SchemaTypes.Token(typeAttribute.Value)) ?? DiskSourceType.File;
        }

        if (disk.Attribute("device") is { } device)
        {
            report.OneOf(device, [.. DomainDiskNames.Devices.Names]);
        }

        if (report.AtMostOne(disk, "driver") is { } driver)
        {
            if (driver.Attribute("name") is { } driverName)
            {
                report.Check(driverName, driverName.Value, SchemaTypes.IsGenericName, "driver name");
            }

            if (driver.Attribute("type") is { } format)
            {
                // storageFormat, plus "aio", kept by the schema as an old spelling of raw.
                report.OneOf(format, [.. StorageFormatNames.SchemaNames, "aio"]);
            }
        }

        if (report.AtMostOne(disk, "source") is { } source)
        {
            var pathAttribute = type switch
            {
                DiskSourceType.File => "file",
                DiskSourceType.Block => "dev",
                DiskSourceType.Dir => "dir",
                _ => null,
            };
            if (pathAttribute is not null && source.Attribute(pathAttribute) is { } path)
            {
                report.Check(path, path.Value, v => SchemaTypes.IsAbsFilePath(v) || v.StartsWith('['), "absolute path");
            }
        }

        var target = report.AtMostOne(disk, "target");
        if (target is null)
        {
            report.Add(disk, "missing required element <target>");
        }
        else
        {
            if (report.Required(target, "dev") is { } dev)
            {
                report.Check(dev, dev.Value, SchemaTypes.IsDiskTargetDev, "disk target name");
            }

            if (target.Attribute("bus") is { } bus)
            {
                report.OneOf(bus, Buses);
            }
        }

        if (report.AtMostOne(disk, "readonly") is { } readOnly)
        {
            report.AllowAttributes(readOnly);
            report.AllowChildren(readOnly);
        }
    }
}
