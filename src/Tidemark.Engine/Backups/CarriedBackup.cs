using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats;
using Tidemark.Formats.Backups;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// A running backup job as one host leaves it to the next (<see cref="BackupJob.HandOverAsync"/>),
/// kept in the domain's status record as libvirt keeps a running job's <c>&lt;domainbackup&gt;</c>
/// in its status XML (spec §3.6), with what QEMU would otherwise hold: each disk's copy state.
/// </summary>
/// <param name="Definition">The aligned document, each disk with its job state (status-XML form).</param>
/// <param name="Elapsed">The job's elapsed time at the hand-over.</param>
internal sealed record CarriedBackup(
    BackupDefinition Definition,
    TimeSpan Elapsed,
    OnCopyBeforeWriteError Policy,
    bool ReuseExternal,
    IReadOnlyList<CarriedDisk> Disks)
{
    public const string ElementName = "backupjob";

    /// <summary>
    /// <c>&lt;backupjob elapsed-ms='…' on-copy-error='…' reuse-external='…'&gt;</c> holding the
    /// status-XML document and one <c>&lt;disk&gt;</c> per backed-up disk, its bitmaps in
    /// base64 (the qcow2 bitmap data layout, <see cref="DirtyBitmap.CopyDataTo"/>).
    /// </summary>
    public XElement ToElement() => new(
        ElementName,
        new XAttribute("elapsed-ms", ((long)Elapsed.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)),
        new XAttribute("on-copy-error", Policy == OnCopyBeforeWriteError.FailJob ? "fail-job" : "fail-guest-write"),
        new XAttribute("reuse-external", ReuseExternal ? "yes" : "no"),
        XElement.Parse(BackupFormatter.Format(Definition, BackupXmlMode.Internal)),
        Disks.Select(d => d.ToElement()));

    /// <exception cref="DocumentException">The element is not a whole, valid carried job.</exception>
    public static CarriedBackup FromElement(XElement element)
    {
        if (element.Name != ElementName
            || !long.TryParse((string?)element.Attribute("elapsed-ms"), NumberStyles.None, CultureInfo.InvariantCulture, out var elapsed)
            || (string?)element.Attribute("on-copy-error") is not ("fail-job" or "fail-guest-write")
            || (string?)element.Attribute("reuse-external") is not ("yes" or "no"))
        {
            throw Invalid("expected <backupjob elapsed-ms on-copy-error reuse-external>");
        }

        var document = element.Element("domainbackup") ?? throw Invalid("no <domainbackup>");
        var definition = BackupParser.Parse(document, BackupXmlMode.Internal);
        var disks = element.Elements("disk").Select(CarriedDisk.FromElement).ToList();
        if (disks.Count == 0)
        {
            throw Invalid("no <disk>");
        }

        return new CarriedBackup(
            definition,
            TimeSpan.FromMilliseconds(elapsed),
            (string?)element.Attribute("on-copy-error") == "fail-job" ? OnCopyBeforeWriteError.FailJob : OnCopyBeforeWriteError.FailGuestWrite,
            (string?)element.Attribute("reuse-external") == "yes",
            disks);
    }

    internal static DocumentException Invalid(string what) => new(DocumentErrorReason.UnexpectedRoot, $"not a carried backup job: {what}");
}

/// <summary>One disk of a <see cref="CarriedBackup"/>.</summary>
/// <param name="Target">The disk's target dev.</param>
/// <param name="CreatedPath">The store's path when the job created it (and so removes it), else null.</param>
/// <param name="Zeroes">How the store takes zero clusters.</param>
/// <param name="Progress">Where the copying had got to.</param>
/// <param name="Allocated">Pull: clusters holding data at the instant.</param>
/// <param name="ZeroData">Pull: clusters allocated at the instant that read as zeroes.</param>
/// <param name="Incremental">The dirty set the job was begun with (a pull exports it as its dirty bitmap).</param>
internal sealed record CarriedDisk(
    string Target,
    string? CreatedPath,
    ZeroClusters Zeroes,
    CopyProgress Progress,
    DirtyBitmap? Allocated,
    DirtyBitmap? ZeroData,
    DirtyBitmap? Incremental)
{
    public XElement ToElement() => new(
        "disk",
        new XAttribute("name", Target),
        CreatedPath is null ? null : new XAttribute("created", CreatedPath),
        new XAttribute("zeroes", Zeroes == ZeroClusters.Skip ? "skip" : "write"),
        new XAttribute("initial", Progress.InitialBytes.ToString(CultureInfo.InvariantCulture)),
        new XAttribute("copied", Progress.CopiedBytes.ToString(CultureInfo.InvariantCulture)),
        Bitmap("pending", Progress.Pending),
        Bitmap("copied", Progress.Copied),
        Bitmap("allocated", Allocated),
        Bitmap("zero-data", ZeroData),
        Bitmap("incremental", Incremental));

    public static CarriedDisk FromElement(XElement element)
    {
        if ((string?)element.Attribute("name") is not { Length: > 0 } target
            || (string?)element.Attribute("zeroes") is not ("skip" or "write")
            || !long.TryParse((string?)element.Attribute("initial"), NumberStyles.None, CultureInfo.InvariantCulture, out var initial)
            || !long.TryParse((string?)element.Attribute("copied"), NumberStyles.None, CultureInfo.InvariantCulture, out var copied))
        {
            throw CarriedBackup.Invalid($"invalid disk {element.Attribute("name")}");
        }

        var pending = ReadBitmap(element, "pending") ?? throw CarriedBackup.Invalid($"disk '{target}' has no pending bitmap");
        var created = (string?)element.Attribute("created");
        if (created is not null && !Path.IsPathFullyQualified(created))
        {
            throw CarriedBackup.Invalid($"disk '{target}': the created store '{created}' is not an absolute path");
        }

        return new CarriedDisk(
            target,
            created,
            (string?)element.Attribute("zeroes") == "skip" ? ZeroClusters.Skip : ZeroClusters.WriteZeroes,
            new CopyProgress(pending, ReadBitmap(element, "copied"), initial, copied),
            ReadBitmap(element, "allocated"),
            ReadBitmap(element, "zero-data"),
            ReadBitmap(element, "incremental"));
    }

    private static XElement? Bitmap(string kind, DirtyBitmap? bitmap)
    {
        if (bitmap is null)
        {
            return null;
        }

        var data = new byte[bitmap.DataLength];
        bitmap.CopyDataTo(0, data);
        return new XElement(
            "bitmap",
            new XAttribute("kind", kind),
            new XAttribute("size", bitmap.Size.ToString(CultureInfo.InvariantCulture)),
            new XAttribute("granularity", bitmap.Granularity.ToString(CultureInfo.InvariantCulture)),
            Convert.ToBase64String(data));
    }

    private static DirtyBitmap? ReadBitmap(XElement disk, string kind)
    {
        var element = disk.Elements("bitmap").FirstOrDefault(b => (string?)b.Attribute("kind") == kind);
        if (element is null)
        {
            return null;
        }

        if (!long.TryParse((string?)element.Attribute("size"), NumberStyles.None, CultureInfo.InvariantCulture, out var size) || size < 1
            || !long.TryParse((string?)element.Attribute("granularity"), NumberStyles.None, CultureInfo.InvariantCulture, out var granularity)
            || !DirtyBitmap.IsValidGranularity(granularity))
        {
            throw CarriedBackup.Invalid($"bitmap '{kind}' has no valid size and granularity");
        }

        DirtyBitmap bitmap;
        try
        {
            bitmap = new DirtyBitmap(size, granularity);
        }
        catch (ArgumentException)
        {
            throw CarriedBackup.Invalid($"bitmap '{kind}' of {size} bytes at {granularity} cannot be held");
        }

        byte[] data;
        try
        {
            data = Convert.FromBase64String(element.Value);
        }
        catch (FormatException)
        {
            throw CarriedBackup.Invalid($"bitmap '{kind}' is not base64");
        }

        if (data.Length != bitmap.DataLength)
        {
            throw CarriedBackup.Invalid($"bitmap '{kind}' holds {data.Length} bytes, not {bitmap.DataLength}");
        }

        bitmap.OrData(0, data);
        return bitmap;
    }
}
