using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>What libvirt checks of a domain's disks together (virDomainDefCheckDuplicateDiskInfo, the controllers their addresses imply).</summary>
internal static class DomainDisks
{
    /// <summary>The <c>&lt;disk&gt;</c> of <paramref name="domain"/> whose target is <paramref name="target"/>, or null.</summary>
    public static XElement? ElementOf(XElement domain, string target)
        => domain.Element("devices")?.Elements("disk").FirstOrDefault(d => d.Element("target")?.Attribute("dev")?.Value == target);

    /// <summary>Every check of a definition's disks: unique targets, then each disk's controller, shared access, error policies and copy-on-read, and transience.</summary>
    /// <exception cref="EngineException">As <see cref="CheckUniqueTargets"/>, <see cref="CheckController"/>, <see cref="CheckSharedAccess"/>, <see cref="CheckFrontend"/> and <see cref="TransientDisks.Check"/>.</exception>
    public static void Check(DomainDefinition definition)
    {
        CheckUniqueTargets(definition);
        foreach (var disk in definition.Element.Element("devices")?.Elements("disk") ?? [])
        {
            CheckController(definition, disk);
            CheckSharedAccess(disk);
            CheckFrontend(disk);
            TransientDisks.Check(disk);
        }
    }

    /// <summary>
    /// What QEMU's device cannot take (qemuValidateDomainDeviceDefDiskFrontend): reads have no
    /// "enospace" error policy, and a read-only disk (a CD-ROM always is) cannot copy on read.
    /// </summary>
    /// <exception cref="EngineException">In libvirt's words, an unsupported configuration.</exception>
    public static void CheckFrontend(XElement disk)
    {
        var driver = disk.Element("driver");
        if (driver?.Attribute("rerror_policy")?.Value is "enospace")
        {
            throw new EngineException(EngineErrorReason.DiskFrontendUnsupported, "Invalid disk read error policy: 'enospace'");
        }

        if (driver?.Attribute("copy_on_read")?.Value is "on" && (disk.Element("readonly") is not null || disk.Attribute("device")?.Value == "cdrom"))
        {
            throw new EngineException(EngineErrorReason.DiskFrontendUnsupported, $"copy_on_read is not compatible with read-only disk '{disk.Element("target")?.Attribute("dev")?.Value}'");
        }
    }

    /// <summary>
    /// A <c>&lt;shareable/&gt;</c> disk its guests may write must be raw
    /// (qemuBlockStorageSourceSupportsConcurrentAccess: a format with metadata of its own, qcow2,
    /// has a single writer). A read-only one (a CD-ROM always is) may be of any format. The format is the one the
    /// disk's defaults gave it (<see cref="DiskDefaults"/>): none named is raw.
    /// </summary>
    /// <exception cref="EngineException">"shared access for disk '%s' requires use of supported storage format", an unsupported configuration.</exception>
    public static void CheckSharedAccess(XElement disk)
    {
        if (disk.Element("shareable") is not null && disk.Element("readonly") is null && disk.Attribute("device")?.Value != "cdrom"
            && (disk.Element("driver")?.Attribute("type")?.Value ?? "raw") != "raw")
        {
            throw new EngineException(EngineErrorReason.SharedAccessUnsupported, $"shared access for disk '{disk.Element("target")?.Attribute("dev")?.Value}' requires use of supported storage format");
        }
    }

    /// <summary>
    /// An IDE disk's controller (virDomainDiskDefAssignAddress: its drive address, else its
    /// name's index / 4) must be the one an i440FX machine has: libvirt adds the controller the
    /// address implies and then refuses it (qemuValidateDomainDeviceDefControllerIDE). So
    /// <c>hdz</c> (index 25, controller 6) is refused however few disks the domain has.
    /// </summary>
    /// <exception cref="EngineException">"Only 1 IDE controller is supported", an internal error in libvirt's words.</exception>
    public static void CheckController(DomainDefinition definition, XElement disk)
    {
        var target = disk.Element("target");
        var dev = target?.Attribute("dev")?.Value ?? "";
        if ((target?.Attribute("bus")?.Value ?? DiskAliases.DefaultBus(dev, disk.Attribute("device")?.Value)) != "ide" || !IsI440Fx(definition))
        {
            return;
        }

        var address = disk.Element("address");
        var controller = address?.Attribute("type")?.Value == "drive" && address.Attribute("controller")?.Value is { } given
            ? (int.TryParse(given, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0)
            : DiskAliases.NameToIndex(dev) / 4;
        if (controller > 0)
        {
            throw new EngineException(EngineErrorReason.TooManyIdeControllers, "Only 1 IDE controller is supported");
        }
    }

    /// <summary>qemuDomainMachineIsI440FX, with libvirt's x86 default ("pc") for a domain that names no machine.</summary>
    private static bool IsI440Fx(DomainDefinition definition)
    {
        var machine = definition.Element.Element("os")?.Element("type")?.Attribute("machine")?.Value ?? "pc";
        return machine == "pc" || machine.StartsWith("pc-0.", StringComparison.Ordinal) || machine.StartsWith("pc-1.", StringComparison.Ordinal)
            || machine.StartsWith("pc-i440", StringComparison.Ordinal) || machine.StartsWith("rhel", StringComparison.Ordinal);
    }

    /// <exception cref="EngineException">"target '%s' duplicated for disk sources '%s' and '%s'", as an XML error.</exception>
    public static void CheckUniqueTargets(DomainDefinition definition)
    {
        var disks = definition.Disks;
        for (var i = 0; i < disks.Count; i++)
        {
            for (var j = i + 1; j < disks.Count; j++)
            {
                if (disks[i].TargetDev == disks[j].TargetDev)
                {
                    throw new EngineException(EngineErrorReason.DuplicateDiskTarget, $"target '{disks[i].TargetDev}' duplicated for disk sources '{disks[i].SourcePath ?? "<null>"}' and '{disks[j].SourcePath ?? "<null>"}'");
                }
            }
        }
    }
}
