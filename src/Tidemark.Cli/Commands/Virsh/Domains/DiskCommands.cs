using System.CommandLine;
using System.Globalization;
using System.Security;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Domains;

/// <summary>virsh's disk verbs: attach-disk, detach-disk, detach-device-alias, update-device, change-media, blockresize, domblkinfo, domblkerror, with virsh 9.0's documents, flags and words; and nodeinfo.</summary>
internal static partial class DiskCommands
{
    // virDomainDeviceModifyFlags.
    private const uint AffectLive = 1;
    private const uint AffectConfig = 2;

    // virDomainXMLFlags.
    private const uint XmlInactive = 2;

    // VIR_DOMAIN_BLOCK_RESIZE_BYTES.
    private const uint ResizeBytes = 1;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        yield return AttachDisk(console);
        yield return DetachDisk(console);
        yield return DetachDeviceAlias(console);
        yield return UpdateDevice(console);
        yield return ChangeMedia(console);
        yield return BlockResize(console);
        yield return DomBlkInfo(console);
        yield return DomBlkError(console);
        yield return NodeInfo(console);
    }

    /// <summary>virsh's domblkerror: each disk whose last request failed, with why.</summary>
    private static Command DomBlkError(CliConsole console)
    {
        var command = new Command("domblkerror", "Show errors on block devices.");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var errors = await s.Client.GetDiskErrorsAsync(d, s.CancellationToken).ConfigureAwait(false);
            return errors.Count == 0
                ? "No errors found\n"
                : string.Concat(errors.Select(e => $"{e.Disk}: {e.Error switch { DiskErrorCode.None => "no error", DiskErrorCode.NoSpace => "no space", _ => "unspecified error" }}\n"));
        });
        return command;
    }

    /// <summary>virsh's nodeinfo: the host's CPUs and memory, each line "%-20s %s".</summary>
    private static Command NodeInfo(CliConsole console)
    {
        var command = new Command("nodeinfo", "Returns basic information about the node.");
        VirshAction.Set(command, console, async s =>
        {
            var n = await s.Client.GetNodeInfoAsync(s.CancellationToken).ConfigureAwait(false);
            (string, string)[] lines =
            [
                ("CPU model:", n.Model),
                ("CPU(s):", n.Cpus.ToString(CultureInfo.InvariantCulture)),
                ("CPU frequency:", $"{n.Mhz.ToString(CultureInfo.InvariantCulture)} MHz"),
                ("CPU socket(s):", n.Sockets.ToString(CultureInfo.InvariantCulture)),
                ("Core(s) per socket:", n.Cores.ToString(CultureInfo.InvariantCulture)),
                ("Thread(s) per core:", n.Threads.ToString(CultureInfo.InvariantCulture)),
                ("NUMA cell(s):", n.Nodes.ToString(CultureInfo.InvariantCulture)),
                ("Memory size:", $"{n.MemoryKiB.ToString(CultureInfo.InvariantCulture)} KiB"),
            ];
            return string.Concat(lines.Select(l => $"{l.Item1,-20} {l.Item2}\n"));
        });
        return command;
    }

    /// <summary>virsh's domblkinfo for one disk (target or source path), in bytes.</summary>
    private static Command DomBlkInfo(CliConsole console)
    {
        var device = new VirshParameter("device", "block device");
        var command = new Command("domblkinfo", "Get block device size info for a domain.");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var info = await s.Client.GetBlockInfoAsync(d, device.Get(s.Result), 0, s.CancellationToken).ConfigureAwait(false);
            return string.Create(CultureInfo.InvariantCulture, $"{"Capacity:",-15} {info.Capacity}\n{"Allocation:",-15} {info.Allocation}\n{"Physical:",-15} {info.Physical}\n");
        });
        device.AddTo(command);
        return command;
    }

    /// <summary>The four ways virsh names the definitions a device change applies to.</summary>
    private sealed class Affect
    {
        public Option<bool> Persistent { get; } = new("--persistent") { Description = "make live change persistent" };

        public Option<bool> Config { get; } = new("--config") { Description = "affect next boot" };

        public Option<bool> Live { get; } = new("--live") { Description = "affect running domain" };

        public Option<bool> Current { get; } = new("--current") { Description = "affect current domain" };

        public void AddTo(Command command)
        {
            command.Options.Add(Persistent);
            command.Options.Add(Config);
            command.Options.Add(Live);
            command.Options.Add(Current);
        }

        /// <summary>virsh's flags, and whether it calls the _FLAGS API (else the old one, which is LIVE).</summary>
        public async Task<(uint Flags, bool UseFlags)> FlagsAsync(VirshSession s, RemoteDomain domain)
        {
            foreach (var (a, b) in new[] { (Persistent, Current), (Current, Live), (Current, Config) })
            {
                if (s.Has(a) && s.Has(b))
                {
                    throw new VirshException($"Options {a.Name} and {b.Name} are mutually exclusive");
                }
            }

            var flags = (s.Has(Config) || s.Has(Persistent) ? AffectConfig : 0) | (s.Has(Live) ? AffectLive : 0);
            if (s.Has(Persistent) && await s.Client.IsDomainActiveAsync(domain, s.CancellationToken).ConfigureAwait(false))
            {
                flags |= AffectLive;
            }

            return (flags, flags != 0 || s.Has(Current));
        }
    }

    private static Command AttachDisk(CliConsole console)
    {
        var source = new VirshParameter("source", "source of disk device or name of network disk");
        var target = new VirshParameter("target", "target of disk device");
        var targetBus = new Option<string?>("--targetbus") { Description = "target bus of disk device" };
        var driver = new Option<string?>("--driver") { Description = "driver of disk device" };
        var subdriver = new Option<string?>("--subdriver") { Description = "subdriver of disk device" };
        var cache = new Option<string?>("--cache") { Description = "cache mode of disk device" };
        var type = new Option<string?>("--type") { Description = "target device type" };
        var mode = new Option<string?>("--mode") { Description = "mode of device reading and writing" };
        var sourceType = new Option<string?>("--sourcetype") { Description = "type of source (block|file)" };
        var alias = new Option<string?>("--alias") { Description = "custom alias name of disk device" };
        var printXml = new Option<bool>("--print-xml") { Description = "print XML document rather than attach the disk" };
        var affect = new Affect();
        var command = new Command("attach-disk", "Attach new disk device.") { targetBus, driver, subdriver, cache, type, mode, sourceType, alias, printXml };
        affect.AddTo(command);
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var (flags, useFlags) = await affect.FlagsAsync(s, d).ConfigureAwait(false);
            var modeValue = s.Result.GetValue(mode);
            if (modeValue is not (null or "readonly" or "shareable"))
            {
                throw new VirshException($"No support for {modeValue} in command 'attach-disk'");
            }

            var kind = s.Result.GetValue(sourceType) ?? "file";
            if (kind is not ("file" or "block"))
            {
                throw new VirshException($"Unknown source type: '{kind}'");
            }

            var xml = DiskXml(kind, s.Result.GetValue(type), s.Result.GetValue(driver), s.Result.GetValue(subdriver), s.Result.GetValue(cache), source.Get(s.Result), target.Get(s.Result), s.Result.GetValue(targetBus), modeValue, s.Result.GetValue(alias));
            if (s.Has(printXml))
            {
                return xml;
            }

            var attach = useFlags ? s.Client.AttachDeviceAsync(d, xml, flags, s.CancellationToken) : s.Client.AttachDeviceAsync(d, xml, null, s.CancellationToken);
            await VirshAction.Failing("Failed to attach disk", attach).ConfigureAwait(false);
            return "Disk attached successfully\n";
        });
        source.AddTo(command);
        target.AddTo(command);
        return command;
    }

    /// <summary>The document virsh builds (cmdAttachDisk), element by element, in its order and indentation.</summary>
    private static string DiskXml(string kind, string? device, string? driver, string? subdriver, string? cache, string source, string target, string? bus, string? mode, string? alias)
    {
        static string Attr(string name, string? value) => value is null ? "" : $" {name}='{SecurityElement.Escape(value)}'";
        var sb = new StringBuilder();
        sb.Append("<disk type='").Append(kind).Append('\'').Append(Attr("device", device)).Append(">\n");
        if (driver is not null || subdriver is not null || cache is not null)
        {
            sb.Append("  <driver").Append(Attr("name", driver)).Append(Attr("type", subdriver)).Append(Attr("cache", cache)).Append("/>\n");
        }

        sb.Append("  <source").Append(Attr(kind == "block" ? "dev" : "file", source)).Append("/>\n");
        sb.Append("  <target").Append(Attr("dev", target)).Append(Attr("bus", bus)).Append("/>\n");
        if (mode is not null)
        {
            sb.Append("  <").Append(mode).Append("/>\n");
        }

        if (alias is not null)
        {
            sb.Append("  <alias").Append(Attr("name", alias)).Append("/>\n");
        }

        return sb.Append("</disk>\n").ToString();
    }

    private static Command DetachDisk(CliConsole console)
    {
        var target = new VirshParameter("target", "target of disk device");
        var printXml = new Option<bool>("--print-xml") { Description = "print XML document rather than detach the disk" };
        var affect = new Affect();
        var command = new Command("detach-disk", "Detach disk device.") { printXml };
        affect.AddTo(command);
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var (flags, useFlags) = await affect.FlagsAsync(s, d).ConfigureAwait(false);
            var name = target.Get(s.Result);
            var domainXml = XDocument.Parse(await s.Client.GetDomainXmlAsync(d, flags == AffectConfig ? XmlInactive : 0, s.CancellationToken).ConfigureAwait(false), LoadOptions.PreserveWhitespace);

            // virshFindDisk: by target dev, or by the source's file, device, directory or name.
            var disk = domainXml.Root?.Element("devices")?.Elements("disk").FirstOrDefault(e =>
                e.Element("target")?.Attribute("dev")?.Value == name
                || e.Element("source")?.Attributes().Any(a => a.Name.LocalName is "file" or "dev" or "dir" or "name" && a.Value == name) == true)
                ?? throw new VirshException($"No disk found whose source path or target is {name}");
            // The element as the document has it: libxml2's xmlNodeDump keeps its whitespace and
            // closes an empty element with "/>" (no space before it, which XElement writes).
            var xml = EmptyElementEnd().Replace(disk.ToString(SaveOptions.DisableFormatting), "$1/>");
            if (s.Has(printXml))
            {
                // virsh prints the document without a newline of its own.
                return xml;
            }

            var detach = useFlags ? s.Client.DetachDeviceAsync(d, xml, flags, s.CancellationToken) : s.Client.DetachDeviceAsync(d, xml, null, s.CancellationToken);
            await VirshAction.Failing("Failed to detach disk", detach).ConfigureAwait(false);
            return "Disk detached successfully\n";
        });
        target.AddTo(command);
        return command;
    }

    /// <summary>virsh's detach-device-alias: the device named by its alias, with --current, --live, --config (no --persistent).</summary>
    private static Command DetachDeviceAlias(CliConsole console)
    {
        var alias = new VirshParameter("alias", "device alias");
        var config = new Option<bool>("--config") { Description = "affect next boot" };
        var live = new Option<bool>("--live") { Description = "affect running domain" };
        var current = new Option<bool>("--current") { Description = "affect current domain" };
        var command = new Command("detach-device-alias", "Detach device from an alias.") { current, config, live };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            foreach (var other in new[] { live, config })
            {
                if (s.Has(current) && s.Has(other))
                {
                    throw new VirshException($"Options {current.Name} and {other.Name} are mutually exclusive");
                }
            }

            var name = alias.Get(s.Result);
            var flags = (s.Has(config) ? AffectConfig : 0) | (s.Has(live) ? AffectLive : 0);
            await VirshAction.Failing($"Failed to detach device with alias {name}", s.Client.DetachDeviceAliasAsync(d, name, flags, s.CancellationToken)).ConfigureAwait(false);
            return "Device detach request sent successfully\n";
        });
        alias.AddTo(command);
        return command;
    }

    private static Command BlockResize(CliConsole console)
    {
        var path = new VirshParameter("path", "Fully-qualified path of block device");
        var size = new VirshParameter("size", "New size of the block device, as scaled integer (default KiB)");
        var command = new Command("blockresize", "Resize block device of domain.");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var disk = path.Get(s.Result);
            var text = size.Get(s.Result);
            var bytes = ScaledSize(text) ?? throw new VirshException($"Scaled numeric value '{text}' for <size> option is malformed or out of range");

            // virsh prefers the older KiB interface when the size is whole KiB.
            var (value, flags) = bytes % 1024 == 0 ? (bytes / 1024, 0u) : (bytes, ResizeBytes);
            await VirshAction.Failing($"Failed to resize block device '{disk}'", s.Client.ResizeBlockAsync(d, disk, value, flags, s.CancellationToken)).ConfigureAwait(false);
            // virsh 9.0's message has no newline of its own; the command's blank line follows.
            return $"Block device '{disk}' is resized";
        });
        path.AddTo(command);
        size.AddTo(command);
        return command;
    }

    /// <summary>virsh's scaled integer (virScaleInteger): KiB without a suffix; b, k/KiB, KB, M/MiB, MB, … up to E.</summary>
    private static ulong? ScaledSize(string text)
    {
        var digits = new string([.. text.TakeWhile(char.IsAsciiDigit)]);
        if (digits.Length == 0 || !ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return null;
        }

        var suffix = text[digits.Length..];
        ulong scale;
        if (suffix.Length == 0)
        {
            scale = 1024;
        }
        else if (suffix is "b" or "B" or "byte" or "bytes")
        {
            scale = 1;
        }
        else
        {
            var power = "KMGTPE".IndexOf(char.ToUpperInvariant(suffix[0]), StringComparison.Ordinal) + 1;
            var unit = suffix[1..] switch
            {
                "" or "iB" => 1024UL,
                "B" => 1000UL,
                _ => 0UL,
            };
            if (power == 0 || unit == 0)
            {
                return null;
            }

            scale = 1;
            for (var i = 0; i < power; i++)
            {
                scale *= unit;
            }
        }

        return number <= ulong.MaxValue / scale ? number * scale : null;
    }

    // An empty element's end as XElement writes it: after an attribute's closing quote, or right
    // after the element's name. Neither can occur inside an attribute value, where '"' and '<'
    // are escaped.
    [GeneratedRegex("(\"|<[A-Za-z_][\\w.:-]*) />")]
    private static partial Regex EmptyElementEnd();
}
