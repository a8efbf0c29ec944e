using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>An image format for a backup target or scratch (<c>&lt;driver type=&gt;</c>).</summary>
public enum StorageFormat
{
    Raw,
    Dir,
    Bochs,
    Cloop,
    Dmg,
    Iso,
    Vpc,
    Vdi,
    Fat,
    Vhd,
    Ploop,
    Cow,
    Qcow,
    Qcow2,
    Qed,
    Vmdk,
}

/// <summary>The XML names of <see cref="StorageFormat"/>, in one table.</summary>
public static class StorageFormatNames
{
    internal static readonly XmlEnumTable<StorageFormat> Table = new(
        (StorageFormat.Raw, "raw"),
        (StorageFormat.Dir, "dir"),
        (StorageFormat.Bochs, "bochs"),
        (StorageFormat.Cloop, "cloop"),
        (StorageFormat.Dmg, "dmg"),
        (StorageFormat.Iso, "iso"),
        (StorageFormat.Vpc, "vpc"),
        (StorageFormat.Vdi, "vdi"),
        (StorageFormat.Fat, "fat"),
        (StorageFormat.Vhd, "vhd"),
        (StorageFormat.Ploop, "ploop"),
        (StorageFormat.Cow, "cow"),
        (StorageFormat.Qcow, "qcow"),
        (StorageFormat.Qcow2, "qcow2"),
        (StorageFormat.Qed, "qed"),
        (StorageFormat.Vmdk, "vmdk"));

    /// <summary>
    /// What the schema's <c>storageFormat</c> accepts: the table plus <c>luks</c>, which passes the
    /// schema but which libvirt's parser refuses as a store format (spec §3.2).
    /// </summary>
    internal static IEnumerable<string> SchemaNames => Table.Names.Append("luks");

    /// <summary>The XML name of <paramref name="format"/>.</summary>
    public static string Of(StorageFormat format) => Table.ToXml(format);
}
