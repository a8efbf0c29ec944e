using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>Reads and writes a backup <see cref="BackupBlockJob"/> in libvirt's status-XML layout (spec §3.6).</summary>
public static class BackupBlockJobXml
{
    private const string HexPrefix = "0x";

    /// <summary>Reads a <c>&lt;blockjob type='backup'&gt;</c> element.</summary>
    /// <exception cref="DocumentException">Another job type, or a missing or invalid field.</exception>
    public static BackupBlockJob Parse(XElement job)
    {
        ArgumentNullException.ThrowIfNull(job);
        if (job.Attribute("type")?.Value != "backup")
        {
            throw Invalid($"block job '{job.Attribute("name")?.Value}' is not a backup job");
        }

        var name = job.Attribute("name")?.Value ?? throw Invalid("missing name of block job");
        var state = job.Attribute("state")?.Value ?? throw Invalid($"missing state of block job '{name}'");
        var flagsText = job.Attribute("jobflags")?.Value ?? HexPrefix + "0";
        if (!flagsText.StartsWith(HexPrefix, StringComparison.Ordinal)
            || !ulong.TryParse(flagsText.AsSpan(HexPrefix.Length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var flags))
        {
            throw Invalid($"invalid jobflags '{flagsText}' of block job '{name}'");
        }

        var disk = job.Element("disk")?.Attribute("dst")?.Value ?? throw Invalid($"missing disk of block job '{name}'");
        var bitmap = job.Element("bitmap")?.Attribute("name")?.Value;
        BackupStore? store = null;
        if (job.Element("store") is { } storeElement)
        {
            var type = BackupNames.StoreTypes.Parse(storeElement.Attribute("type")?.Value ?? "file")
                ?? throw Invalid($"unsupported store type '{storeElement.Attribute("type")?.Value}' of block job '{name}'");
            StorageFormat? format = null;
            if (storeElement.Attribute("format") is { } formatAttribute)
            {
                format = StorageFormatNames.Table.Parse(formatAttribute.Value)
                    ?? throw new DocumentException(DocumentErrorReason.UnknownStoreFormat, $"unknown storage source format '{formatAttribute.Value}'");
            }

            var source = storeElement.Element("source");
            uint index = 0;
            if (source?.Attribute("index") is { } indexAttribute && !uint.TryParse(indexAttribute.Value, NumberStyles.None, CultureInfo.InvariantCulture, out index))
            {
                throw Invalid($"invalid store index '{indexAttribute.Value}' of block job '{name}'");
            }

            var nodes = source?.Elements("privateData").Elements("nodenames").Elements("nodename").ToList() ?? [];
            store = new BackupStore(
                type,
                format,
                source?.Attribute(type == StoreType.Block ? "dev" : "file")?.Value,
                index,
                [],
                null,
                nodes.FirstOrDefault(n => n.Attribute("type")?.Value == "storage")?.Attribute("name")?.Value,
                nodes.FirstOrDefault(n => n.Attribute("type")?.Value == "format")?.Attribute("name")?.Value);
        }

        return new BackupBlockJob(name, state, flags, disk, bitmap, store);
    }

    /// <summary>Writes <paramref name="job"/> starting at <paramref name="indent"/> spaces.</summary>
    public static string Format(BackupBlockJob job, int indent = 0)
    {
        ArgumentNullException.ThrowIfNull(job);
        var w = new LibvirtXmlWriter(indent);
        w.Open(
            "blockjob",
            ("name", job.Name),
            ("type", "backup"),
            ("state", job.State),
            ("jobflags", HexPrefix + job.JobFlags.ToString("x", CultureInfo.InvariantCulture)));
        w.Empty("disk", ("dst", job.DiskTarget));
        if (job.Bitmap is not null)
        {
            w.Empty("bitmap", ("name", job.Bitmap));
        }

        if (job.Store is { } store)
        {
            w.Open("store", ("type", BackupNames.Of(store.Type)), ("format", store.Format is { } f ? StorageFormatNames.Of(f) : null));
            var index = store.Index != 0 ? store.Index.ToString(CultureInfo.InvariantCulture) : null;
            (string, string?)[] sourceAttributes = [(store.Type == StoreType.Block ? "dev" : "file", store.Path), ("index", index)];
            if (store.StorageNodeName is null && store.FormatNodeName is null)
            {
                w.Empty("source", sourceAttributes);
            }
            else
            {
                w.Open("source", sourceAttributes);
                BackupFormatter.FormatNodeNames(w, store);
                w.Close("source");
            }

            w.Close("store");
        }

        w.Close("blockjob");
        return w.ToString();
    }

    private static DocumentException Invalid(string detail) => new(DocumentErrorReason.InvalidAttribute, detail);
}
