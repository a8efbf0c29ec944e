using System.Xml.Linq;
using Tidemark.Formats.Domains;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Domains;

/// <summary>
/// Disks marked <c>&lt;transient/&gt;</c>, as libvirt's QEMU driver runs them: at the start each
/// gets a qcow2 overlay beside its image, <c>&lt;source&gt;.TRANSIENT-&lt;domain&gt;</c>, backed by
/// the image, and the guest writes into the overlay; the stop deletes it, so the image is as it
/// was. The running definition names the overlay as the disk's source (qcow2, the image its
/// backing store), as libvirtd's live XML does. Block jobs (checkpoints, backups) are refused
/// on such a disk, in libvirt's words.
/// </summary>
internal static class TransientDisks
{
    private const string OverlaySuffix = ".TRANSIENT-";

    /// <summary>The overlay of a transient disk whose image is <paramref name="source"/> in domain <paramref name="domain"/>.</summary>
    public static string OverlayPath(string source, string domain) => source + OverlaySuffix + domain;

    /// <summary>A transient disk may not be read-only (a CD-ROM always is): qemuValidateDomainDeviceDefDiskTransient.</summary>
    /// <exception cref="EngineException">"transient disk '%s' must not be read-only", an unsupported configuration.</exception>
    public static void Check(XElement disk)
    {
        if (disk.Element("transient") is not null && (disk.Element("readonly") is not null || disk.Attribute("device")?.Value == "cdrom"))
        {
            throw new EngineException(EngineErrorReason.TransientDiskReadOnly, $"transient disk '{disk.Element("target")?.Attribute("dev")?.Value}' must not be read-only");
        }
    }

    /// <summary>
    /// The block-job refusal for a disk that is transient (qemuDomainDiskBlockJobIsSupported):
    /// checkpoints and backups of it are block jobs.
    /// </summary>
    /// <exception cref="EngineException">"block jobs are not supported on transient disk '%s'", an unsupported operation.</exception>
    public static void RefuseBlockJob(DomainDefinition definition, string target)
    {
        if (IsTransient(definition, target))
        {
            throw new EngineException(EngineErrorReason.TransientDiskBlockJob, $"block jobs are not supported on transient disk '{target}'");
        }
    }

    /// <summary>
    /// Creates the overlay of every transient disk with media of <paramref name="definition"/>
    /// and returns the running definition that names them; the same object when there is none.
    /// A failure removes the overlays it created.
    /// </summary>
    /// <exception cref="EngineException">An overlay exists already ("Overlay file '%s' for transient disk '%s' already exists"); an image cannot be read or an overlay created.</exception>
    public static async Task<DomainDefinition> AddOverlaysAsync(DomainDefinition definition, CancellationToken cancellationToken)
    {
        if (!Elements(definition).Any())
        {
            return definition;
        }

        var live = new XElement(definition.Element);
        var created = new List<string>();
        try
        {
            foreach (var disk in Elements(live).ToList())
            {
                created.Add(await AddOverlayAsync(disk, definition.Name, cancellationToken).ConfigureAwait(false));
            }
        }
        catch
        {
            foreach (var path in created)
            {
                TryDelete(path);
            }

            throw;
        }

        return DomainParser.Parse(live);
    }

    /// <summary>
    /// Creates the overlay of the transient disk <paramref name="disk"/> (with media) and points
    /// the element at it; returns the overlay's path.
    /// </summary>
    /// <exception cref="EngineException">The overlay exists already, or cannot be created.</exception>
    public static async Task<string> AddOverlayAsync(XElement disk, string domain, CancellationToken cancellationToken)
    {
        var parsed = DomainParser.ParseDisk(disk);
        var source = parsed.SourcePath!;
        var overlay = OverlayPath(source, domain);
        if (File.Exists(overlay))
        {
            throw new EngineException(EngineErrorReason.TransientOverlayExists, $"Overlay file '{overlay}' for transient disk '{parsed.TargetDev}' already exists");
        }

        var format = parsed.DriverType == "qcow2" ? ImageFormat.Qcow2 : ImageFormat.Raw;
        try
        {
            var image = await DiskImage.OpenWithoutBackingAsync(source, format, cancellationToken).ConfigureAwait(false);
            var size = image.VirtualSize;
            await image.DisposeAsync().ConfigureAwait(false);

            // Named, not opened: the disk opens the overlay with its chain once the start goes on.
            var created = await Qcow2Image.CreateDetachedAsync(overlay, new Qcow2CreateOptions { Size = size, BackingFile = source, BackingFormat = format }, cancellationToken).ConfigureAwait(false);
            await created.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException)
        {
            TryDelete(overlay);
            throw new EngineException(EngineErrorReason.ImageFailed, $"cannot create overlay '{overlay}' for transient disk '{parsed.TargetDev}': {e.Message}", e);
        }

        // libvirt's live XML: the overlay is the disk's qcow2 source, the image its backing store
        // (what the definition stated below the image stays below it).
        var sourceElement = disk.Element("source")!;
        var stated = disk.Element("backingStore");
        stated?.Remove();
        sourceElement.SetAttributeValue("file", overlay);
        var driver = disk.Element("driver") ?? new XElement("driver");
        if (driver.Parent is null)
        {
            disk.AddFirst(driver);
        }

        driver.SetAttributeValue("type", "qcow2");
        if (stated is not null)
        {
            sourceElement.AddAfterSelf(new XElement("backingStore", new XAttribute("type", "file"), new XElement("format", new XAttribute("type", format.ToName())), new XElement("source", new XAttribute("file", source)), stated));
        }

        return overlay;
    }

    /// <summary>
    /// Deletes the overlays of a stopped domain's transient disks, named by its running
    /// definition (libvirt's qemuProcessStop removes them whatever ended the domain).
    /// </summary>
    public static void DeleteOverlays(DomainDefinition running)
    {
        foreach (var disk in running.Disks)
        {
            if (disk.SourcePath is { } path && path.EndsWith(OverlaySuffix + running.Name, StringComparison.Ordinal) && IsTransient(running, disk.TargetDev))
            {
                TryDelete(path);
            }
        }
    }

    /// <summary>
    /// Deletes what a host killed while <paramref name="definition"/>'s domain ran left of its
    /// transient disks' overlays, found beside the images its definition names.
    /// </summary>
    public static void DeleteLeftOverlays(DomainDefinition definition)
    {
        foreach (var disk in Elements(definition))
        {
            if (DomainParser.ParseDisk(disk).SourcePath is { } source)
            {
                TryDelete(OverlayPath(source, definition.Name));
            }
        }
    }

    /// <summary>Deletes an overlay, a failure logged nowhere: the guest's writes are gone either way.</summary>
    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The guest's writes are gone either way once the domain is off; a file that stays is
            // refused as existing at the next start, which names it.
        }
    }

    /// <summary>The targets of <paramref name="definition"/>'s transient disks with media.</summary>
    public static HashSet<string> Targets(DomainDefinition definition)
        => [.. Elements(definition).Select(Target).OfType<string>()];

    private static bool IsTransient(DomainDefinition definition, string target)
        => Elements(definition).Any(d => Target(d) == target);

    // The transient disks with media, in domain order.
    private static IEnumerable<XElement> Elements(DomainDefinition definition) => Elements(definition.Element);

    private static IEnumerable<XElement> Elements(XElement domain)
        => domain.Element("devices")?.Elements("disk").Where(d => d.Element("transient") is not null && !DomainParser.ParseDisk(d).IsEmpty) ?? [];

    private static string? Target(XElement disk) => disk.Element("target")?.Attribute("dev")?.Value;
}
