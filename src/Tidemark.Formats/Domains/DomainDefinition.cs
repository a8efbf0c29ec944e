using System.Xml.Linq;

namespace Tidemark.Formats.Domains;

/// <summary>
/// The disk-related part of a libvirt <c>&lt;domain&gt;</c>: what checkpoints and backups align
/// against. Everything else in the document is kept, unmodelled, in <see cref="Element"/> and
/// written back unchanged where a checkpoint embeds the domain.
/// </summary>
/// <param name="Type">The hypervisor type (<c>qemu</c>, <c>kvm</c>, <c>test</c>, …).</param>
/// <param name="Name">The domain name.</param>
/// <param name="Uuid">The UUID as written, or null when the document has none.</param>
/// <param name="Disks">The <c>&lt;devices&gt;&lt;disk&gt;</c> elements, in document order.</param>
/// <param name="Element">The whole <c>&lt;domain&gt;</c> element as read.</param>
public sealed record DomainDefinition(
    string Type,
    string Name,
    string? Uuid,
    IReadOnlyList<DomainDisk> Disks,
    XElement Element)
{
    /// <summary>The disk whose target is <paramref name="target"/>, or null (libvirt <c>virDomainDiskByTarget</c>).</summary>
    public DomainDisk? DiskByTarget(string target) => Disks.FirstOrDefault(d => d.TargetDev == target);

    /// <summary>
    /// The disk named by target or, for a name starting with '/', by source path (libvirt
    /// <c>virDomainDiskByName</c> without ambiguity): a path shared by two disks finds none.
    /// </summary>
    public DomainDisk? DiskByName(string name)
    {
        if (!name.StartsWith('/'))
        {
            return DiskByTarget(name);
        }

        var matches = Disks.Where(d => d.SourcePath == name).Take(2).ToList();
        return matches.Count == 1 ? matches[0] : null;
    }
}
