namespace Tidemark.Storage.Qcow2;

/// <summary>
/// The qcow2 header (formats.md §1.2) with its extensions (§1.3) and backing file name: the
/// whole content of cluster 0. Parsing checks every constraint the spec and QEMU impose once;
/// the rest of the code trusts the result. Unknown header fields past the known ones and
/// unknown extensions are kept verbatim so that a rewrite preserves them.
/// </summary>
internal sealed partial record Qcow2Header
{
    public required int Version { get; init; }

    public required int ClusterBits { get; init; }

    public required long Size { get; init; }

    public required int L1Size { get; init; }

    public required long L1TableOffset { get; init; }

    public required long RefcountTableOffset { get; init; }

    public required int RefcountTableClusters { get; init; }

    public int SnapshotCount { get; init; }

    public long SnapshotsOffset { get; init; }

    public ulong IncompatibleFeatures { get; init; }

    public ulong CompatibleFeatures { get; init; }

    public ulong AutoclearFeatures { get; init; }

    public int RefcountOrder { get; init; } = Qcow2Layout.DefaultRefcountOrder;

    /// <summary>v3: 104, 112 or more; v2: 72.</summary>
    public int HeaderLength { get; init; } = Qcow2Layout.V3HeaderLength;

    public byte CompressionType { get; init; }

    /// <summary>Header bytes past offset 112 that this version of the format does not define (kept as read).</summary>
    public ReadOnlyMemory<byte> UnknownFields { get; init; }

    /// <summary>Extensions other than the backing format, in file order.</summary>
    public IReadOnlyList<Qcow2HeaderExtension> Extensions { get; init; } = [];

    public string? BackingFile { get; init; }

    public string? BackingFormat { get; init; }

    public int ClusterSize => 1 << ClusterBits;

    public bool HasExtendedL2 => (IncompatibleFeatures & Qcow2Layout.IncompatExtendedL2) != 0;

    /// <summary>L2 entries per table: cluster_size / 8, or / 16 with extended L2 (§1.5).</summary>
    public int L2Entries => ClusterSize / (HasExtendedL2 ? 16 : 8);

    public int RefcountBits => 1 << RefcountOrder;

    /// <summary>The payload of an extension of <paramref name="type"/>, or null.</summary>
    public ReadOnlyMemory<byte>? FindExtension(uint type)
    {
        foreach (var e in Extensions)
        {
            if (e.Type == type)
            {
                return e.Data;
            }
        }

        return null;
    }

    /// <summary>A copy with the extension of <paramref name="type"/> replaced, added (in QEMU's order) or removed.</summary>
    public Qcow2Header WithExtension(uint type, ReadOnlyMemory<byte>? data)
    {
        var list = new List<Qcow2HeaderExtension>(Extensions.Count + 1);
        var placed = data is null;
        foreach (var e in Extensions)
        {
            if (e.Type == type)
            {
                if (!placed)
                {
                    list.Add(new Qcow2HeaderExtension(type, data!.Value));
                    placed = true;
                }

                continue;
            }

            // QEMU's order: feature table, crypto, bitmaps, data file; a new bitmaps extension goes before the data file name.
            if (!placed && type == Qcow2Layout.ExtensionBitmaps && e.Type == Qcow2Layout.ExtensionDataFile)
            {
                list.Add(new Qcow2HeaderExtension(type, data!.Value));
                placed = true;
            }

            list.Add(e);
        }

        if (!placed)
        {
            list.Add(new Qcow2HeaderExtension(type, data!.Value));
        }

        return this with { Extensions = list };
    }

    /// <summary>
    /// Number of L1 entries needed to map <paramref name="size"/> bytes with the given geometry.
    /// </summary>
    public static long RequiredL1Entries(long size, int clusterBits, int l2Entries)
    {
        var clusters = (size + (1L << clusterBits) - 1) >> clusterBits;
        return (clusters + l2Entries - 1) / l2Entries;
    }
}
