using System.Text;

namespace Tidemark.Storage.Qcow2;

/// <summary>Which header field a feature bit lives in (feature name table type byte, formats.md §1.3).</summary>
internal enum Qcow2FeatureKind : byte
{
    Incompatible = 0,
    Compatible = 1,
    Autoclear = 2,
}

/// <summary>
/// The feature name table extension (type 0x6803f857): 48-byte entries naming feature bits, so
/// an unknown incompatible bit can be refused by name. Tidemark writes QEMU 7.2's table.
/// </summary>
internal static class Qcow2FeatureTable
{
    private static readonly (Qcow2FeatureKind Kind, byte Bit, string Name)[] QemuTable =
    [
        (Qcow2FeatureKind.Incompatible, 0, "dirty bit"),
        (Qcow2FeatureKind.Incompatible, 1, "corrupt bit"),
        (Qcow2FeatureKind.Incompatible, 2, "external data file"),
        (Qcow2FeatureKind.Incompatible, 3, "compression type"),
        (Qcow2FeatureKind.Incompatible, 4, "extended L2 entries"),
        (Qcow2FeatureKind.Compatible, 0, "lazy refcounts"),
        (Qcow2FeatureKind.Autoclear, 0, "bitmaps"),
        (Qcow2FeatureKind.Autoclear, 1, "raw external data"),
    ];

    /// <summary>The table QEMU 7.2 writes into every v3 image it creates (8 entries, 384 bytes).</summary>
    public static byte[] Build()
    {
        var table = new byte[QemuTable.Length * Qcow2Layout.FeatureTableEntryLength];
        for (var i = 0; i < QemuTable.Length; i++)
        {
            var entry = table.AsSpan(i * Qcow2Layout.FeatureTableEntryLength, Qcow2Layout.FeatureTableEntryLength);
            entry[0] = (byte)QemuTable[i].Kind;
            entry[1] = QemuTable[i].Bit;
            Encoding.ASCII.GetBytes(QemuTable[i].Name, entry[2..]);
        }

        return table;
    }

    /// <summary>The name an image's own table gives a bit, or null when it has none.</summary>
    public static string? Find(ReadOnlySpan<byte> table, Qcow2FeatureKind kind, int bit)
    {
        for (var at = 0; at + Qcow2Layout.FeatureTableEntryLength <= table.Length; at += Qcow2Layout.FeatureTableEntryLength)
        {
            var entry = table.Slice(at, Qcow2Layout.FeatureTableEntryLength);
            if (entry[0] == (byte)kind && entry[1] == bit)
            {
                var name = entry.Slice(2, Qcow2Layout.FeatureNameLength);
                var end = name.IndexOf((byte)0);
                return Encoding.UTF8.GetString(end < 0 ? name : name[..end]);
            }
        }

        return null;
    }
}
