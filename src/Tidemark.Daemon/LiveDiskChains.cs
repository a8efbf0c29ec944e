using System.Collections.Immutable;
using System.Globalization;
using System.Xml.Linq;
using Tidemark.Engine.Disks;
using Tidemark.Storage;

namespace Tidemark.Daemon;

/// <summary>
/// A running domain's disks as libvirt's live XML shows them (virDomainDiskSourceFormat,
/// virDomainDiskBackingStoreFormat): each source with the node index its top layer took, then
/// the image's backing chain as the running domain opened it, each layer with its index and
/// format, ended by an empty <c>&lt;backingStore/&gt;</c>; a drive ejected while running shows
/// its empty source's index (<c>&lt;source index='11'/&gt;</c>), one empty since the start no
/// source and no format.
/// </summary>
internal static class LiveDiskChains
{
    /// <summary>Rewrites the disks of <paramref name="domain"/> (a copy of the running definition) in place.</summary>
    public static void Apply(XElement domain, RunningDomain running, IReadOnlyDictionary<string, ImmutableArray<uint>> nodes)
    {
        foreach (var disk in domain.Element("devices")?.Elements("disk") ?? [])
        {
            var target = disk.Element("target")?.Attribute("dev")?.Value;
            if (target is null)
            {
                continue;
            }

            var indexes = nodes.TryGetValue(target, out var numbered) ? numbered : [];
            if (running.DiskByTarget(target) is { } served)
            {
                WithChain(disk, served.Layers(), indexes);
            }
            else if (indexes.Length > 0 && disk.Element("source") is null)
            {
                PlaceSource(disk, [new XElement("source", Index(indexes[0]))]);
            }
            else if (indexes.Length == 0 && disk.Element("source") is null)
            {
                // A drive empty since the start: libvirt keeps no format for its source.
                disk.Element("driver")?.Attribute("type")?.Remove();
            }
        }
    }

    private static void WithChain(XElement disk, IReadOnlyList<(string? Path, ImageFormat Format)> layers, ImmutableArray<uint> indexes)
    {
        var source = disk.Element("source");
        if (source is null)
        {
            return;
        }

        if (indexes.Length > 0)
        {
            source.SetAttributeValue("index", indexes[0].ToString(CultureInfo.InvariantCulture));
        }

        // The chain as opened replaces any the definition gave (the two name the same files).
        disk.Elements("backingStore").Remove();
        XElement end = new("backingStore");
        var chain = end;
        for (var i = layers.Count - 1; i >= 1; i--)
        {
            var (path, format) = layers[i];
            if (path is null)
            {
                continue;
            }

            var block = DiskImage.IsBlockDevice(path);
            chain = new XElement(
                "backingStore",
                new XAttribute("type", block ? "block" : "file"),
                i < indexes.Length ? Index(indexes[i]) : null,
                new XElement("format", new XAttribute("type", format == ImageFormat.Qcow2 ? "qcow2" : "raw")),
                new XElement("source", new XAttribute(block ? "dev" : "file", path)),
                chain);
        }

        source.AddAfterSelf(chain);
    }

    /// <summary>Where libvirt writes a disk's source: after its driver, else first.</summary>
    private static void PlaceSource(XElement disk, XElement[] source)
    {
        if (disk.Element("driver") is { } driver)
        {
            driver.AddAfterSelf(source);
        }
        else
        {
            disk.AddFirst(source);
        }
    }

    private static XAttribute Index(uint index) => new("index", index.ToString(CultureInfo.InvariantCulture));
}
