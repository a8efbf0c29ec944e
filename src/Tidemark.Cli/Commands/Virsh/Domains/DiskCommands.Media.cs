using System.CommandLine;
using System.Xml.Linq;

namespace Tidemark.Cli.Commands.Virsh.Domains;

/// <summary>virsh's update-device and change-media (virDomainUpdateDeviceFlags), with virsh 9.0's documents, flags and words.</summary>
internal static partial class DiskCommands
{
    // VIR_DOMAIN_DEVICE_MODIFY_FORCE.
    private const uint ModifyForce = 4;

    // The source attributes virshFindDisk matches a path against, and those virshUpdateDiskXML
    // reads the current media's path from, each in virsh's order.
    private static readonly string[] FoundBy = ["file", "dev", "dir", "name"];
    private static readonly string[] MediaPath = ["file", "dev", "dir", "pool", "name"];

    /// <summary>virsh's update-device: the device in a file, with --persistent, --config, --live, --current and --force.</summary>
    private static Command UpdateDevice(CliConsole console)
    {
        var file = new VirshParameter("file", "XML file");
        var force = new Option<bool>("--force") { Description = "force device update" };
        var affect = new Affect();
        var command = new Command("update-device", "Update device from an XML <file>.") { force };
        affect.AddTo(command);
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var (flags, _) = await affect.FlagsAsync(s, d).ConfigureAwait(false);
            var path = file.Get(s.Result);
            var xml = await s.ReadFileAsync(path).ConfigureAwait(false);
            await VirshAction.Failing($"Failed to update device from {path}", s.Client.UpdateDeviceAsync(d, xml, flags | (s.Has(force) ? ModifyForce : 0), s.CancellationToken)).ConfigureAwait(false);
            return "Device updated successfully\n";
        });
        file.AddTo(command);
        return command;
    }

    /// <summary>
    /// virsh's change-media (cmdChangeMedia): the drive found by target or source path among the
    /// CD-ROMs and floppies of the live (or, with --config, inactive) XML, its &lt;source&gt;
    /// replaced as virshUpdateDiskXML replaces it, then sent as a device update.
    /// </summary>
    private static Command ChangeMedia(CliConsole console)
    {
        var path = new VirshParameter("path", "Fully-qualified path or target of disk device");
        var source = new VirshParameter("source", "source of the media");
        var eject = new Option<bool>("--eject") { Description = "Eject the media" };
        var insert = new Option<bool>("--insert") { Description = "Insert the media" };
        var update = new Option<bool>("--update") { Description = "Update the media" };
        var config = new Option<bool>("--config") { Description = "affect next boot" };
        var live = new Option<bool>("--live") { Description = "affect running domain" };
        var current = new Option<bool>("--current") { Description = "affect current domain" };
        var force = new Option<bool>("--force") { Description = "force media changing" };
        var printXml = new Option<bool>("--print-xml") { Description = "print XML document rather than change media" };
        var block = new Option<bool>("--block") { Description = "source media is a block device" };
        var command = new Command("change-media", "Change media of CD or floppy drive.") { eject, insert, update, current, live, config, force, printXml, block };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            foreach (var (a, b) in new[] { (eject, insert), (eject, update), (insert, update), (eject, block) })
            {
                if (s.Has(a) && s.Has(b))
                {
                    throw new VirshException($"Options {a.Name} and {b.Name} are mutually exclusive");
                }
            }

            var newSource = source.Find(s.Result);

            // virsh's documentation: an update without a source is an eject.
            var action = s.Has(eject) || (s.Has(update) && newSource is null) ? "eject" : s.Has(insert) ? "insert" : "update";
            foreach (var (a, b) in new[] { (current, live), (current, config) })
            {
                if (s.Has(a) && s.Has(b))
                {
                    throw new VirshException($"Options {a.Name} and {b.Name} are mutually exclusive");
                }
            }

            var flags = (s.Has(config) ? AffectConfig : 0) | (s.Has(live) ? AffectLive : 0) | (s.Has(force) ? ModifyForce : 0);
            var name = path.Get(s.Result);
            var domainXml = XDocument.Parse(await s.Client.GetDomainXmlAsync(d, (flags & AffectConfig) != 0 ? XmlInactive : 0, s.CancellationToken).ConfigureAwait(false), LoadOptions.PreserveWhitespace);
            var disk = FindChangeable(domainXml, name) ?? throw new VirshException($"No disk found whose source path or target is {name}");
            var xml = WithNewMedia(disk, action == "eject" ? null : newSource, action, s.Has(block) && action != "eject", name);
            if (s.Has(printXml))
            {
                return xml;
            }

            await VirshAction.Failing($"Failed to complete action {action} on media", s.Client.UpdateDeviceAsync(d, xml, flags, s.CancellationToken)).ConfigureAwait(false);
            return action switch
            {
                "eject" => "Successfully ejected media.",
                "insert" => "Successfully inserted media.",
                _ => "Successfully updated media.",
            };
        });
        path.AddTo(command);
        source.AddTo(command);
        return command;
    }

    /// <summary>virshFindDisk with VIRSH_FIND_DISK_CHANGEABLE: a CD-ROM or floppy whose target or source is <paramref name="name"/>.</summary>
    private static XElement? FindChangeable(XDocument domainXml, string name)
        => domainXml.Root?.Element("devices")?.Elements("disk")
            .Where(e => e.Attribute("device")?.Value is "cdrom" or "floppy")
            .FirstOrDefault(e => e.Elements().Any(c =>
                (c.Name.LocalName == "target" && c.Attribute("dev")?.Value == name)
                || (c.Name.LocalName == "source" && FoundBy.Select(a => c.Attribute(a)?.Value).FirstOrDefault(v => v is not null) == name)));

    /// <summary>
    /// virshUpdateDiskXML: the drive's &lt;source&gt; taken out (its whitespace left, as
    /// xmlUnlinkNode leaves it), the type set to file or block, and the new source (with the old
    /// startup policy) put before the &lt;target&gt;.
    /// </summary>
    private static string WithNewMedia(XElement found, string? newSource, string action, bool isBlock, string name)
    {
        var disk = new XElement(found);
        var old = disk.Element("source");
        if (action == "eject" && old is null)
        {
            throw new VirshException($"The disk device '{name}' doesn't have media");
        }

        if (action != "eject" && newSource is null)
        {
            throw new VirshException("New disk media source was not specified");
        }

        string? startupPolicy = null;
        if (old is not null)
        {
            var oldPath = MediaPath.Select(a => old.Attribute(a)?.Value).FirstOrDefault(v => v is not null);
            if (oldPath is not null && action == "insert")
            {
                throw new VirshException($"The disk device '{name}' already has media");
            }

            startupPolicy = old.Attribute("startupPolicy")?.Value;
            old.Remove();
        }

        disk.SetAttributeValue("type", isBlock ? "block" : "file");
        if (newSource is not null)
        {
            var added = new XElement("source", new XAttribute(isBlock ? "dev" : "file", newSource));
            if (startupPolicy is not null)
            {
                added.SetAttributeValue("startupPolicy", startupPolicy);
            }

            // Before the target, indented as the target is; the old source's whitespace stays.
            if (disk.Element("target") is { } target)
            {
                target.AddBeforeSelf(added);
                if (added.PreviousNode is XText { Value: var indent } && string.IsNullOrWhiteSpace(indent))
                {
                    added.AddAfterSelf(new XText(indent));
                }
            }
            else
            {
                disk.Add(added);
            }
        }

        return EmptyElementEnd().Replace(disk.ToString(SaveOptions.DisableFormatting), "$1/>");
    }
}
