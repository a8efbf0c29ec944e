using System.Collections.Immutable;
using System.Globalization;
using System.Xml;
using System.Xml.Linq;
using Tidemark.Engine.Disks;
using Tidemark.Formats;
using Tidemark.Formats.Domains;
using Tidemark.Nbd;

namespace Tidemark.Engine.State;

/// <summary>
/// What a running domain was when the host that ran it closed and left it to the next one
/// (<see cref="Domains.DomainHost.CloseKeepingDomainsAsync"/>): <c>run/&lt;domain&gt;.xml</c>, the
/// counterpart of libvirt's status file <c>/run/libvirt/qemu/&lt;domain&gt;.xml</c>, from which
/// libvirtd reconnects to the QEMU that kept running while it was down
/// (qemuProcessReconnect). A Tidemark domain's disks are served by the process hosting the
/// engine, so the next host starts them again, as they were: same id, paused or not, the same
/// sockets, and the running definition (which can differ from the persistent one).
/// </summary>
/// <remarks>
/// The layout follows libvirt's <c>&lt;domstatus state='running'&gt;&lt;domain id='N'&gt;…</c>, with
/// the hand-over's progress in a <c>handover</c> attribute and the TCP port in a
/// <c>&lt;guest tcp-port='N'/&gt;</c> element of Tidemark's own. The file is written atomically,
/// and removed once the next host has started the domain again.
/// </remarks>
/// <param name="HandedOver">
/// False while the hand-over runs (<c>handover='started'</c>): written before the guests are
/// disconnected, and rewritten true (<c>handover='done'</c>) once every image is flushed, so
/// the next host starts the domain again only when every write a guest was told of is in the
/// images. A record still false is a hand-over a kill cut short: a crash.
/// </param>
internal sealed record DomainStatus(DomainDefinition Definition, int Id, bool Paused, int? TcpPort, bool HandedOver)
{
    /// <summary>
    /// Each disk's request counts when its guests were disconnected (written with
    /// <see cref="HandedOver"/>): the next host's counts go on from them, as QEMU's go on
    /// across a restart of libvirtd. In <c>&lt;disk-stats target='vda' rd-reqs='…' …/&gt;</c>
    /// elements of Tidemark's own.
    /// </summary>
    public IReadOnlyList<DiskStatistics> Disks { get; init; } = [];

    /// <summary>
    /// The node counter (<c>Domain.LastStoreIndex</c>), as libvirt's status file keeps it in
    /// <c>&lt;nodename index='N'/&gt;</c>: the next host numbers stores after it, as libvirtd
    /// goes on after its restart. 0 in a record that lacks it.
    /// </summary>
    public uint NodeIndex { get; init; }

    /// <summary>
    /// The indexes each running disk's layers took from that counter (<see cref="Domains.NodeNumbering.Disks"/>),
    /// which libvirt's status file keeps as the disks' <c>index</c> attributes: in
    /// <c>&lt;disk-nodes target='vda' indexes='5 6 7'/&gt;</c> elements of Tidemark's own.
    /// Empty in a record that lacks them (the next host then numbers the disks as a start does).
    /// </summary>
    public IReadOnlyDictionary<string, ImmutableArray<uint>> DiskNodes { get; init; } = ImmutableDictionary<string, ImmutableArray<uint>>.Empty;

    /// <summary>Resumed since its start: libvirt's reason <c>unpaused</c> for a running domain, <c>booted</c> otherwise (a paused one's is <c>user</c>, and a resume makes it <c>unpaused</c> again).</summary>
    public bool WasResumed { get; init; }

    /// <summary>Paused by a guest request's I/O failure (libvirt's reason <c>ioerror</c>) rather than by a suspend.</summary>
    public bool PausedByIoError { get; init; }

    /// <summary>
    /// The backup job left running with the domain (<c>Backups.CarriedBackup</c>'s
    /// <c>&lt;backupjob&gt;</c>), kept as written: a job that cannot be read back is dropped
    /// when the domain is taken up, without losing the domain.
    /// </summary>
    public XElement? Backup { get; init; }

    /// <summary>Writes the record to <paramref name="path"/> atomically.</summary>
    public Task WriteAsync(string path, CancellationToken cancellationToken)
    {
        var domain = XElement.Parse(DomainFormatter.Format(Definition, DomainFormatFlags.Secure));
        domain.SetAttributeValue("id", Id.ToString(CultureInfo.InvariantCulture));
        var status = new XElement(
            "domstatus",
            new XAttribute("state", Paused ? "paused" : "running"),
            new XAttribute("reason", Paused ? (PausedByIoError ? "ioerror" : "user") : WasResumed ? "unpaused" : "booted"),
            new XAttribute("handover", HandedOver ? "done" : "started"),
            TcpPort is { } port ? new XElement("guest", new XAttribute("tcp-port", port.ToString(CultureInfo.InvariantCulture))) : null,
            new XElement("nodename", new XAttribute("index", NodeIndex.ToString(CultureInfo.InvariantCulture))),
            Disks.Select(d => d.ToElement()),
            DiskNodes.OrderBy(d => d.Key, StringComparer.Ordinal).Select(d => new XElement(
                "disk-nodes",
                new XAttribute("target", d.Key),
                new XAttribute("indexes", string.Join(' ', d.Value.Select(i => i.ToString(CultureInfo.InvariantCulture)))))),
            Backup,
            domain);
        return AtomicFile.WriteAsync(path, status + "\n", cancellationToken);
    }

    /// <summary>Reads the record at <paramref name="path"/>.</summary>
    /// <exception cref="DocumentException">The file is not a status record, or its domain breaks the domain schema.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static async Task<DomainStatus> ReadAsync(string path, CancellationToken cancellationToken)
    {
        XElement status;
        try
        {
            status = XElement.Parse(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false));
        }
        catch (XmlException e)
        {
            throw Invalid(path, e.Message);
        }

        var domain = status.Name == "domstatus" ? status.Element("domain") : null;
        if (domain is null)
        {
            throw Invalid(path, "expected <domstatus> holding a <domain>");
        }

        var state = (string?)status.Attribute("state");
        if (state is not ("running" or "paused"))
        {
            throw Invalid(path, $"unknown domain state '{state}'");
        }

        var reason = (string?)status.Attribute("reason");
        if (reason is not (null or "booted" or "unpaused" or "user" or "ioerror"))
        {
            throw Invalid(path, $"unknown state reason '{reason}'");
        }

        var handover = (string?)status.Attribute("handover");
        if (handover is not ("started" or "done"))
        {
            throw Invalid(path, $"unknown hand-over state '{handover}'");
        }

        if (!int.TryParse((string?)domain.Attribute("id"), NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id < 1)
        {
            throw Invalid(path, "the domain has no valid id");
        }

        int? port = null;
        if (status.Element("guest")?.Attribute("tcp-port") is { } portText)
        {
            if (!int.TryParse(portText.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value is < 1 or > 65535)
            {
                throw Invalid(path, $"invalid guest TCP port '{portText.Value}'");
            }

            port = value;
        }

        uint nodeIndex = 0;
        if (status.Element("nodename")?.Attribute("index") is { } indexText
            && !uint.TryParse(indexText.Value, NumberStyles.None, CultureInfo.InvariantCulture, out nodeIndex))
        {
            throw Invalid(path, $"invalid node index '{indexText.Value}'");
        }

        var disks = new List<DiskStatistics>();
        foreach (var element in status.Elements("disk-stats"))
        {
            disks.Add(DiskStatistics.FromElement(element) ?? throw Invalid(path, $"invalid disk statistics {element}"));
        }

        var diskNodes = ImmutableDictionary.CreateBuilder<string, ImmutableArray<uint>>();
        foreach (var element in status.Elements("disk-nodes"))
        {
            var indexes = ((string?)element.Attribute("indexes") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var parsed = indexes.Select(i => uint.TryParse(i, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0u).ToImmutableArray();
            if ((string?)element.Attribute("target") is not { Length: > 0 } target || parsed.Length == 0 || parsed.Contains(0u))
            {
                throw Invalid(path, $"invalid disk nodes {element}");
            }

            diskNodes[target] = parsed;
        }

        domain.Attribute("id")!.Remove();
        return new DomainStatus(DomainParser.Parse(domain), id, state == "paused", port, handover == "done")
        {
            WasResumed = reason == "unpaused",
            PausedByIoError = reason == "ioerror",
            NodeIndex = nodeIndex,
            DiskNodes = diskNodes.ToImmutable(),
            Disks = disks,
            Backup = status.Element("backupjob"),
        };
    }

    private static DocumentException Invalid(string path, string what)
        => new(DocumentErrorReason.UnexpectedRoot, $"{path}: not a domain status record: {what}");
}

/// <summary>One disk's request counts and io-status (<see cref="RunningDisk.IoStatus"/>) in a <see cref="DomainStatus"/>.</summary>
internal sealed record DiskStatistics(string Target, NbdExportCounters Counters, DiskIoStatus IoStatus)
{
    // QEMU's words for a device's io-status.
    private static readonly string[] IoStatuses = ["ok", "failed", "nospace"];

    private static readonly string[] Names = ["rd-reqs", "rd-bytes", "rd-ns", "wr-reqs", "wr-bytes", "wr-ns", "fl-reqs", "fl-ns"];

    public XElement ToElement()
    {
        var c = Counters;
        long[] values = [c.ReadOperations, c.ReadBytes, c.ReadNanoseconds, c.WriteOperations, c.WriteBytes, c.WriteNanoseconds, c.FlushOperations, c.FlushNanoseconds];
        return new XElement(
            "disk-stats",
            new XAttribute("target", Target),
            Names.Select((n, i) => new XAttribute(n, values[i].ToString(CultureInfo.InvariantCulture))),
            new XAttribute("io-status", IoStatuses[(int)IoStatus]));
    }

    /// <summary>The statistics an element holds, or null when it is not a whole, valid one.</summary>
    public static DiskStatistics? FromElement(XElement element)
    {
        var values = new long[Names.Length];
        for (var i = 0; i < Names.Length; i++)
        {
            if (!long.TryParse((string?)element.Attribute(Names[i]), NumberStyles.None, CultureInfo.InvariantCulture, out values[i]))
            {
                return null;
            }
        }

        if ((string?)element.Attribute("target") is not { Length: > 0 } target
            || Array.IndexOf(IoStatuses, (string?)element.Attribute("io-status") ?? "ok") is not (>= 0 and var status))
        {
            return null;
        }

        return new DiskStatistics(target, new NbdExportCounters(values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7]), (DiskIoStatus)status);
    }
}
