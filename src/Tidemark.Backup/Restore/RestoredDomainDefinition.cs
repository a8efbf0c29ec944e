using System.Xml.Linq;
using Tidemark.Backup.Repository;
using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Storage;

namespace Tidemark.Backup.Restore;

/// <summary>
/// <c>restore --define</c>: the domain XML saved with the backup, its restored disks' sources
/// pointing at the restored files, defined on a host through libvirt's API (virDomainDefineXML).
/// The domain is only defined, never started.
/// </summary>
public static class RestoredDomainDefinition
{
    /// <summary>
    /// Tidemark's daemon reports each running disk's NBD URI under <c>&lt;metadata&gt;</c> in
    /// this namespace (Tidemark.Daemon's RunningDomainXml); it describes the old run, not the
    /// restored domain.
    /// </summary>
    private static readonly XNamespace RunningNamespace = "https://tidemark.dev/schemas/domain/1.0";

    /// <summary>Refuses, before anything is restored, a name the host already uses: defining it would replace that domain's definition.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.OutputExists"/>: the host has a domain of that name.</exception>
    public static async Task CheckNameFreeAsync(string connectionUri, string name, CancellationToken cancellationToken)
    {
        var client = await LibvirtClient.ConnectAsync(connectionUri, null, cancellationToken).ConfigureAwait(false);
        await using (client.ConfigureAwait(false))
        {
            try
            {
                await client.LookupDomainByNameAsync(name, cancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomain)
            {
                return;
            }

            throw new BackupException(BackupErrorReason.OutputExists, $"domain '{name}' already exists on the host; define the restored one under another name (--name)");
        }
    }

    /// <summary>Defines the restored domain as <paramref name="name"/>; returns the XML it was defined from.</summary>
    /// <exception cref="BackupException"><see cref="BackupErrorReason.RepositoryDamaged"/>: the backup's domain XML is missing.</exception>
    /// <exception cref="LibvirtError">The host refused the definition.</exception>
    public static async Task<string> DefineAsync(BackupRepository repository, BackupManifest manifest, IReadOnlyList<RestoredDisk> disks, ImageFormat format, string connectionUri, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(repository);
        ArgumentNullException.ThrowIfNull(manifest);
        var path = repository.DomainXmlPath(manifest.Domain, manifest.Checkpoint);
        if (!File.Exists(path))
        {
            throw new BackupException(BackupErrorReason.RepositoryDamaged, $"backup {manifest.Checkpoint} of domain '{manifest.Domain}' has no domain XML ({path})");
        }

        var xml = Rewrite(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false), disks, format, name);
        var client = await LibvirtClient.ConnectAsync(connectionUri, null, cancellationToken).ConfigureAwait(false);
        await using (client.ConfigureAwait(false))
        {
            await client.DefineDomainAsync(xml, 0, cancellationToken).ConfigureAwait(false);
        }

        return xml;
    }

    /// <summary>
    /// The saved domain XML with each restored disk a file disk of the restored image
    /// (<c>&lt;source file&gt;</c>, driver type raw or qcow2, no backing store); renamed, the
    /// uuid dropped so the host gives the copy its own; the live-only <c>id</c> and run metadata removed.
    /// A copy (another name) leaves out every writable disk that was not restored (a disk the
    /// backup does not hold, or one not asked for): kept, it would name the original domain's
    /// own image, and the copy would write into it. Read-only disks and CD-ROMs stay.
    /// </summary>
    public static string Rewrite(string domainXml, IReadOnlyList<RestoredDisk> disks, ImageFormat format, string name)
    {
        ArgumentNullException.ThrowIfNull(disks);
        var document = XDocument.Parse(domainXml);
        var root = document.Root ?? throw new BackupException(BackupErrorReason.RepositoryDamaged, "the backup's domain XML is empty");
        root.Attribute("id")?.Remove();
        if ((string?)root.Element("name") != name)
        {
            root.SetElementValue("name", name);
            root.Element("uuid")?.Remove();
        }

        root.Element("metadata")?.Elements().Where(e => e.Name.Namespace == RunningNamespace).Remove();
        if (root.Element("metadata") is { HasElements: false } metadata)
        {
            metadata.Remove();
        }

        var copy = root.Attribute("uuid") is null && root.Element("uuid") is null;
        foreach (var element in (root.Element("devices")?.Elements("disk") ?? []).ToList())
        {
            var target = (string?)element.Element("target")?.Attribute("dev");
            if (disks.FirstOrDefault(d => d.Disk == target) is not { } restored)
            {
                var writable = ((string?)element.Attribute("device") ?? "disk") == "disk" && element.Element("readonly") is null;
                if (copy && writable)
                {
                    element.Remove();
                }

                continue;
            }

            element.SetAttributeValue("type", "file");
            element.Element("source")?.Remove();
            element.Element("backingStore")?.Remove();
            var driver = element.Element("driver");
            if (driver is null)
            {
                driver = new XElement("driver", new XAttribute("name", "qemu"));
                element.AddFirst(driver);
            }

            driver.SetAttributeValue("type", format == ImageFormat.Qcow2 ? "qcow2" : "raw");
            driver.AddAfterSelf(new XElement("source", new XAttribute("file", restored.Path)));
        }

        return document.ToString();
    }
}
