using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>
/// A disk's device alias in a running domain, as libvirt's QEMU driver names it
/// (qemuAssignDeviceDiskAlias): the user's own (<c>&lt;alias name='ua-…'/&gt;</c>) when the
/// definition gives one; else, on a bus whose disks are placed by drive address (IDE, SATA,
/// SCSI, floppy), the bus and that address (<c>ide0-1-0</c>, <c>sata0-0-2</c>, <c>scsi0-0-1</c>);
/// else the bus and the disk's index from its name (<c>virtio-disk1</c> for <c>vdb</c>). Device
/// events and <c>virDomainDetachDeviceAlias</c> name a disk by it.
/// </summary>
public static class DiskAliases
{
    /// <summary>The prefix of an alias the user gives (libvirt's USER_ALIAS_PREFIX): the only kind a definition keeps.</summary>
    public const string UserPrefix = "ua-";

    private static readonly string[] NamePrefixes = ["fd", "hd", "vd", "sd", "xvd", "ubd"];

    /// <summary>The alias of the disk whose target is <paramref name="target"/> in <paramref name="definition"/>, or null when there is no such disk.</summary>
    public static string? Of(DomainDefinition definition, string target)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var element = DomainDisks.ElementOf(definition.Element, target);
        if (element is null)
        {
            return null;
        }

        if (element.Element("alias")?.Attribute("name")?.Value is { } own && own.StartsWith(UserPrefix, StringComparison.Ordinal))
        {
            return own;
        }

        var bus = element.Element("target")?.Attribute("bus")?.Value ?? DefaultBus(target, element.Attribute("device")?.Value);
        var index = NameToIndex(target);
        var address = element.Elements("address").FirstOrDefault(a => a.Attribute("type")?.Value == "drive");
        if (address is null && bus is not ("ide" or "sata" or "scsi" or "fdc"))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{bus}-disk{index}");
        }

        var (controller, busNumber, targetNumber, unit) = address is null ? DefaultAddress(bus, index) : Read(address);

        // An LSI controller's disks have no target in their alias; every other SCSI controller's do.
        return bus == "scsi" && !IsLsiLogic(definition, controller)
            ? string.Create(CultureInfo.InvariantCulture, $"scsi{controller}-{busNumber}-{targetNumber}-{unit}")
            : string.Create(CultureInfo.InvariantCulture, $"{bus}{controller}-{busNumber}-{unit}");
    }

    /// <summary>The target dev of the disk whose alias is <paramref name="alias"/>, or null.</summary>
    public static string? TargetOf(DomainDefinition definition, string alias)
    {
        ArgumentNullException.ThrowIfNull(definition);
        return definition.Disks.FirstOrDefault(d => Of(definition, d.TargetDev) == alias)?.TargetDev;
    }

    /// <summary>
    /// The definition's XML as a running domain shows it: every disk with its alias, placed
    /// before its <c>&lt;address&gt;</c> as libvirt writes it.
    /// </summary>
    public static XElement WithAliases(DomainDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var element = new XElement(definition.Element);
        foreach (var disk in element.Element("devices")?.Elements("disk") ?? [])
        {
            if (disk.Element("target")?.Attribute("dev")?.Value is not { } target || Of(definition, target) is not { } alias)
            {
                continue;
            }

            disk.Elements("alias").Remove();
            var node = new XElement("alias", new XAttribute("name", alias));
            if (disk.Element("address") is { } address)
            {
                address.AddBeforeSelf(node);
            }
            else
            {
                disk.Add(node);
            }
        }

        return element;
    }

    /// <summary>libvirt's virDiskNameToIndex: the letters after the prefix in base 26 (<c>vda</c> 0, <c>vdz</c> 25, <c>vdaa</c> 26); 0 for a name it cannot read.</summary>
    internal static int NameToIndex(string name)
    {
        var prefix = NamePrefixes.FirstOrDefault(p => name.StartsWith(p, StringComparison.Ordinal));
        if (prefix is null)
        {
            return 0;
        }

        var index = 0;
        var letters = 0;
        foreach (var c in name.AsSpan(prefix.Length))
        {
            if (c is < 'a' or > 'z' || letters == 7)
            {
                break;
            }

            index = ((index + (letters == 0 ? 0 : 1)) * 26) + (c - 'a');
            letters++;
        }

        return index;
    }

    /// <summary>virDomainDiskDefParseXML's bus for a disk that names none: by its device, then its name's prefix.</summary>
    internal static string DefaultBus(string target, string? device) =>
        device == "floppy" ? "fdc"
        : target.StartsWith("sd", StringComparison.Ordinal) ? "scsi"
        : target.StartsWith("vd", StringComparison.Ordinal) ? "virtio"
        : target.StartsWith("xvd", StringComparison.Ordinal) ? "xen"
        : target.StartsWith("ubd", StringComparison.Ordinal) ? "uml"
        : "ide";

    /// <summary>
    /// virDomainDiskDefAssignAddress: where a disk goes on its bus when the definition does not
    /// say. SCSI is a wide bus for the QEMU driver: 15 disks a controller, unit 7 being the
    /// controller's own.
    /// </summary>
    private static (int Controller, int Bus, int Target, int Unit) DefaultAddress(string bus, int index) => bus switch
    {
        "scsi" => (index / 15, 0, 0, index % 15 >= 7 ? (index % 15) + 1 : index % 15),
        "ide" => (index / 4, index % 4 / 2, 0, index % 2),
        "sata" => (index / 6, 0, 0, index % 6),
        _ => (index / 2, 0, 0, index % 2),
    };

    private static (int Controller, int Bus, int Target, int Unit) Read(XElement address)
    {
        static int Number(XElement address, string name)
            => int.TryParse(address.Attribute(name)?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        return (Number(address, "controller"), Number(address, "bus"), Number(address, "target"), Number(address, "unit"));
    }

    /// <summary>
    /// Whether the SCSI controller <paramref name="index"/> is an LSI one: as defined, or, for
    /// one the definition leaves out or gives no model, the QEMU driver's default on x86 with an
    /// LSI device available (qemuDomainGetSCSIControllerModel).
    /// </summary>
    private static bool IsLsiLogic(DomainDefinition definition, int index)
    {
        var controller = definition.Element.Element("devices")?.Elements("controller")
            .FirstOrDefault(c => c.Attribute("type")?.Value == "scsi" && (c.Attribute("index")?.Value ?? "0") == index.ToString(CultureInfo.InvariantCulture));
        return controller?.Attribute("model")?.Value is null or "lsilogic";
    }
}
