using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Domains;

/// <summary>virsh's domain queries: list, dominfo, domstate, domblklist, domblkstat, and Tidemark's domnbd.</summary>
internal static class DomainQueryCommands
{
    // virConnectListAllDomainsFlags.
    private const uint ListActive = 1;
    private const uint ListInactive = 2;
    private const uint ListRunning = 1 << 4;
    private const uint ListPaused = 1 << 5;
    private const uint ListShutoff = 1 << 6;
    private const uint ListOther = 1 << 7;
    private const uint ListHasCheckpoint = 1 << 14;
    private const uint ListNoCheckpoint = 1 << 15;

    // virDomainXMLFlags.
    private const uint XmlInactive = 2;

    /// <summary>Tidemark's domain metadata namespace, where the daemon reports each running disk's NBD URI.</summary>
    private static readonly XNamespace TidemarkNamespace = Tidemark.Daemon.RunningDomainXml.Namespace;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        yield return List(console);
        yield return DomInfo(console);
        yield return DomState(console);
        yield return DomBlkList(console);
        yield return DomBlkStat(console);
        yield return DomNbd(console);
    }

    private static Command List(CliConsole console)
    {
        var all = new Option<bool>("--all") { Description = "list inactive & active domains" };
        var inactive = new Option<bool>("--inactive") { Description = "list inactive domains" };
        var name = new Option<bool>("--name") { Description = "list domain names only" };
        var uuid = new Option<bool>("--uuid") { Description = "list uuid's only" };
        var withCheckpoint = new Option<bool>("--with-checkpoint") { Description = "list domains with existing checkpoint" };
        var withoutCheckpoint = new Option<bool>("--without-checkpoint") { Description = "list domains without a checkpoint" };
        var running = new Option<bool>("--state-running") { Description = "list domains in running state" };
        var paused = new Option<bool>("--state-paused") { Description = "list domains in paused state" };
        var shutoff = new Option<bool>("--state-shutoff") { Description = "list domains in shutoff state" };
        var other = new Option<bool>("--state-other") { Description = "list domains in other states" };
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("list", "List domains.") { all, inactive, name, uuid, withCheckpoint, withoutCheckpoint, running, paused, shutoff, other, json };
        VirshAction.Set(command, console, async s =>
        {
            var flags = s.Has(all) ? 0 : s.Has(inactive) ? ListInactive : ListActive;
            flags |= (s.Has(withCheckpoint) ? ListHasCheckpoint : 0) | (s.Has(withoutCheckpoint) ? ListNoCheckpoint : 0);

            // As virsh's cmdList: the state filters narrow the active (or, with --all, every) domain.
            flags |= (s.Has(running) ? ListRunning : 0) | (s.Has(paused) ? ListPaused : 0) | (s.Has(shutoff) ? ListShutoff : 0) | (s.Has(other) ? ListOther : 0);
            var domains = await s.Client.ListAllDomainsAsync(flags, s.CancellationToken).ConfigureAwait(false);

            // virsh's order: running domains by id, then inactive ones by name.
            var sorted = domains
                .OrderBy(d => d.Id == RemoteDomain.InactiveId ? 1 : 0)
                .ThenBy(d => d.Id)
                .ThenBy(d => d.Name, StringComparer.OrdinalIgnoreCase)
                .ToList();
            var states = new List<string>();
            foreach (var d in sorted)
            {
                var state = await s.Client.GetDomainStateAsync(d, cancellationToken: s.CancellationToken).ConfigureAwait(false);
                states.Add(VirshText.State(state.State));
            }

            if (s.Has(json))
            {
                DomainEntry[] entries = [.. sorted.Select((d, i) => new DomainEntry(d.Id == RemoteDomain.InactiveId ? null : d.Id, d.Name, d.Uuid.ToString("D"), states[i]))];
                return JsonSerializer.Serialize(entries, VirshJsonContext.Default.DomainEntryArray) + "\n";
            }

            if (s.Has(name) || s.Has(uuid))
            {
                var sb = new StringBuilder();
                foreach (var d in sorted)
                {
                    sb.Append(s.Has(uuid) && s.Has(name) ? $"{d.Uuid:D} {d.Name}" : s.Has(uuid) ? d.Uuid.ToString("D") : d.Name).Append('\n');
                }

                return sb.ToString();
            }

            var table = new VirshTable("Id", "Name", "State");
            for (var i = 0; i < sorted.Count; i++)
            {
                var d = sorted[i];
                table.Add(d.Id == RemoteDomain.InactiveId ? "-" : d.Id.ToString(CultureInfo.InvariantCulture), d.Name, states[i]);
            }

            return table.ToString();
        });
        return command;
    }

    private static Command DomInfo(CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("dominfo", "Returns basic information about the domain.") { json };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var info = await s.Client.GetDomainInfoAsync(d, s.CancellationToken).ConfigureAwait(false);
            bool? persistent = await Optional(s.Client.IsDomainPersistentAsync(d, s.CancellationToken)).ConfigureAwait(false);
            bool? autostart = await Optional(s.Client.GetAutostartAsync(d, s.CancellationToken)).ConfigureAwait(false);
            bool? managedSave = await Optional(s.Client.HasManagedSaveImageAsync(d, 0, s.CancellationToken)).ConfigureAwait(false);
            string? osType;
            try
            {
                osType = await s.Client.GetOsTypeAsync(d, s.CancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError)
            {
                // virsh leaves the line out when the driver cannot say.
                osType = null;
            }

            var id = d.Id == RemoteDomain.InactiveId ? (int?)null : d.Id;
            if (s.Has(json))
            {
                var entry = new DomainInfoEntry(id, d.Name, d.Uuid.ToString("D"), VirshText.State(info.State), info.VirtualCpus, info.MaxMemoryKiB, info.MemoryKiB, persistent, autostart);
                return JsonSerializer.Serialize(entry, VirshJsonContext.Default.DomainInfoEntry) + "\n";
            }

            var sb = new StringBuilder();
            void Line(string label, string value) => sb.Append(CultureInfo.InvariantCulture, $"{label,-15} {value}\n");
            Line("Id:", id?.ToString(CultureInfo.InvariantCulture) ?? "-");
            Line("Name:", d.Name);
            Line("UUID:", d.Uuid.ToString("D"));
            if (osType is not null)
            {
                Line("OS Type:", osType);
            }

            Line("State:", VirshText.State(info.State));
            Line("CPU(s):", info.VirtualCpus.ToString(CultureInfo.InvariantCulture));
            if (info.State != DomainState.Shutoff && info.CpuTimeNs != 0)
            {
                Line("CPU time:", string.Create(CultureInfo.InvariantCulture, $"{info.CpuTimeNs / 1e9:F1}s"));
            }

            // libvirt reports an unlimited maximum as the largest unsigned long.
            Line("Max memory:", info.MaxMemoryKiB == ulong.MaxValue ? "no limit" : $"{info.MaxMemoryKiB} KiB");
            Line("Used memory:", $"{info.MemoryKiB} KiB");
            Line("Persistent:", persistent is { } p ? (p ? "yes" : "no") : "unknown");
            if (autostart is { } a)
            {
                Line("Autostart:", a ? "enable" : "disable");
            }

            Line("Managed save:", managedSave is { } m ? (m ? "yes" : "no") : "unknown");
            return sb.ToString();
        });
        return command;
    }

    private static async Task<bool?> Optional(Task<bool> call)
    {
        try
        {
            return await call.ConfigureAwait(false);
        }
        catch (LibvirtError)
        {
            return null;
        }
    }

    private static Command DomState(CliConsole console)
    {
        var reason = new Option<bool>("--reason") { Description = "also print reason for the state" };
        var command = new Command("domstate", "Returns state about a domain.") { reason };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var state = await s.Client.GetDomainStateAsync(d, cancellationToken: s.CancellationToken).ConfigureAwait(false);
            return s.Has(reason)
                ? $"{VirshText.State(state.State)} ({VirshText.Reason(state.State, state.Reason)})\n"
                : VirshText.State(state.State) + "\n";
        });
        return command;
    }

    /// <summary>
    /// virsh's domblkstat: the fields it knows first, in its order, under their old names
    /// (rd_req …) or in words (--human), then any other field as it came.
    /// </summary>
    private static Command DomBlkStat(CliConsole console)
    {
        (string Field, string? Legacy, string Human)[] known =
        [
            ("rd_operations", "rd_req", "number of read operations:"),
            ("rd_bytes", "rd_bytes", "number of bytes read:"),
            ("wr_operations", "wr_req", "number of write operations:"),
            ("wr_bytes", "wr_bytes", "number of bytes written:"),
            ("errs", "errs", "error count:"),
            ("flush_operations", null, "number of flush operations:"),
            ("rd_total_times", null, "total duration of reads (ns):"),
            ("wr_total_times", null, "total duration of writes (ns):"),
            ("flush_total_times", null, "total duration of flushes (ns):"),
        ];
        var human = new Option<bool>("--human") { Description = "print a more human readable output" };
        var device = new VirshParameter("device", "block device");
        var command = new Command("domblkstat", "Get device block stats for a running domain.") { human };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var path = device.Find(s.Result) ?? "";
            var parameters = await s.Client.GetBlockStatsAsync(d, path, s.CancellationToken).ConfigureAwait(false);
            var sb = new StringBuilder();
            var label = path;
            if (s.Has(human))
            {
                sb.Append("Device: ").Append(path).Append('\n');
                label = "";
            }

            void Line(string name, TypedParameter p) => sb.Append(label).Append(' ').Append(s.Has(human) ? name.PadRight(31) : name).Append(' ').Append(p.FormatValue()).Append('\n');
            foreach (var (field, legacy, words) in known)
            {
                if (parameters.FirstOrDefault(p => p.Field == field) is { } p)
                {
                    Line(s.Has(human) ? words : legacy ?? field, p);
                }
            }

            foreach (var p in parameters.Where(p => !known.Any(k => k.Field == p.Field)))
            {
                Line(p.Field, p);
            }

            return sb.ToString();
        });
        device.AddTo(command);
        return command;
    }

    private static Command DomBlkList(CliConsole console)
    {
        var inactive = new Option<bool>("--inactive") { Description = "get inactive rather than running configuration" };
        var details = new Option<bool>("--details") { Description = "additionally display the type and device value" };
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("domblklist", "List all domain blocks.") { inactive, details, json };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var xml = XDocument.Parse(await s.Client.GetDomainXmlAsync(d, s.Has(inactive) ? XmlInactive : 0, s.CancellationToken).ConfigureAwait(false));
            var disks = xml.Root?.Element("devices")?.Elements("disk").Select(Disk).ToArray() ?? [];
            if (s.Has(json))
            {
                return JsonSerializer.Serialize(disks, VirshJsonContext.Default.DiskEntryArray) + "\n";
            }

            var table = s.Has(details) ? new VirshTable("Type", "Device", "Target", "Source") : new VirshTable("Target", "Source");
            foreach (var disk in disks)
            {
                if (s.Has(details))
                {
                    table.Add(disk.Type, disk.Device, disk.Target, disk.Source);
                }
                else
                {
                    table.Add(disk.Target, disk.Source);
                }
            }

            return table.ToString();
        });
        return command;
    }

    // virsh's source column: the first of the source's file, dev, dir, name or pool/volume attributes, else "-".
    private static DiskEntry Disk(XElement disk)
    {
        var source = disk.Element("source");
        var path = source?.Attribute("file")?.Value ?? source?.Attribute("dev")?.Value ?? source?.Attribute("dir")?.Value
            ?? source?.Attribute("name")?.Value
            ?? (source?.Attribute("pool") is { } pool && source.Attribute("volume") is { } volume ? $"{pool.Value}/{volume.Value}" : null);
        return new DiskEntry(
            disk.Attribute("type")?.Value ?? "-",
            disk.Attribute("device")?.Value ?? "-",
            disk.Element("target")?.Attribute("dev")?.Value ?? "-",
            path ?? "-");
    }

    private static Command DomNbd(CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("domnbd", "Print the NBD URIs each disk of a running domain is served on, for the guest (Tidemark's addition).") { json };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var xml = XDocument.Parse(await s.Client.GetDomainXmlAsync(d, 0, s.CancellationToken).ConfigureAwait(false));
            var disks = xml.Root?.Element("metadata")?.Element(TidemarkNamespace + "disks")?.Elements(TidemarkNamespace + "disk").ToList();
            if (disks is null)
            {
                throw LibvirtError.Create(VirErrorNumber.OperationInvalid, VirErrorDomain.Domain, "domain is not running");
            }

            // One row per URI: the unix socket's, then the 127.0.0.1 listener's when the domain has one.
            NbdEntry[] entries = [.. disks.Select(e => new NbdEntry(e.Attribute("target")?.Value ?? "-", e.Attribute("uri")?.Value ?? "-", e.Attribute("tcp-uri")?.Value))];
            if (s.Has(json))
            {
                return JsonSerializer.Serialize(entries, VirshJsonContext.Default.NbdEntryArray) + "\n";
            }

            var table = new VirshTable("Target", "URI");
            foreach (var entry in entries)
            {
                table.Add(entry.Target, entry.Uri);
                if (entry.TcpUri is { } tcp)
                {
                    table.Add(entry.Target, tcp);
                }
            }

            return table.ToString();
        });
        return command;
    }
}
