using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Info;

/// <summary>What <c>image info</c> reports about one image of a chain.</summary>
internal sealed record ImageInfo
{
    public required string Filename { get; init; }

    public required string Format { get; init; }

    public required long VirtualSize { get; init; }

    /// <summary>Bytes the file occupies on disk (allocated blocks).</summary>
    public required long ActualSize { get; init; }

    public int? ClusterSize { get; init; }

    public string? BackingFilename { get; init; }

    public string? FullBackingFilename { get; init; }

    public string? BackingFormat { get; init; }

    /// <summary>qcow2 only: "1.1" or "0.10".</summary>
    public string? Compat { get; init; }

    public string? CompressionType { get; init; }

    public bool LazyRefcounts { get; init; }

    public int RefcountBits { get; init; }

    public bool Corrupt { get; init; }

    public bool ExtendedL2 { get; init; }

    /// <summary>
    /// QEMU lists lazy refcounts, the corrupt bit and extended L2 only for version 3 images
    /// (qcow2_get_specific_info fills them for qcow2_version 3 alone).
    /// </summary>
    public bool IsVersion3 => Compat == "1.1";

    /// <summary>qcow2 only: the persistent bitmaps, in directory order (name, granularity, flags).</summary>
    public IReadOnlyList<BitmapInfo> Bitmaps { get; init; } = [];

    /// <summary>qcow2 only: the internal snapshots, in table order.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; init; } = [];

    /// <summary>
    /// The backing file name as qemu-img prints it (QEMU's path_combine): absolute names as
    /// they are, relative ones after the directory part of the image name as it was given, so
    /// "top.qcow2" naming "base.qcow2" gives "base.qcow2", and "d/top.qcow2" gives "d/base.qcow2".
    /// A "protocol:" prefix before the last slash is kept as QEMU keeps it.
    /// </summary>
    public static string CombineBackingName(string imageName, string backingName)
    {
        if (backingName.StartsWith('/'))
        {
            return backingName;
        }

        var colon = imageName.IndexOf(':', StringComparison.Ordinal);
        var start = colon < 0 ? 0 : colon + 1;
        var slash = imageName.LastIndexOf('/');
        var keep = Math.Max(start, slash + 1);
        return imageName[..keep] + backingName;
    }

    /// <exception cref="StorageException">The snapshot table breaks the format.</exception>
    public static async Task<ImageInfo> DescribeAsync(IBlockImage image, string path, CancellationToken cancellationToken)
    {
        var info = Describe(image, path);
        return image is Qcow2Image { SnapshotCount: > 0 } q
            ? info with { Snapshots = await q.ReadSnapshotsAsync(cancellationToken).ConfigureAwait(false) }
            : info;
    }

    private static ImageInfo Describe(IBlockImage image, string path)
    {
        var actual = AllocatedBytes(path);
        if (image is Qcow2Image q)
        {
            return new ImageInfo
            {
                Filename = path,
                Format = "qcow2",
                VirtualSize = q.VirtualSize,
                ActualSize = actual,
                ClusterSize = q.ClusterSize,
                BackingFilename = q.BackingFileName,
                FullBackingFilename = q.BackingFileName is null ? null : CombineBackingName(path, q.BackingFileName),
                BackingFormat = q.BackingFormat,
                Compat = q.Version >= 3 ? "1.1" : "0.10",
                CompressionType = q.CompressionTypeName,
                LazyRefcounts = q.HasLazyRefcounts,
                RefcountBits = q.RefcountBits,
                Corrupt = q.IsMarkedCorrupt,
                ExtendedL2 = q.HasExtendedL2,
                Bitmaps = q.Bitmaps.Bitmaps.Where(b => b.Persistent).Select(b => new BitmapInfo(b.Name, b.Granularity, b.Inconsistent, b.Enabled)).ToList(),
            };
        }

        return new ImageInfo { Filename = path, Format = "raw", VirtualSize = image.VirtualSize, ActualSize = actual };
    }

    private static long AllocatedBytes(string path)
    {
        // st_blocks * 512, as qemu-img's "disk size"; fall back to the length where stat is unavailable.
        try
        {
            return NativeStat.AllocatedBytes(path);
        }
        catch (IOException)
        {
            return new FileInfo(path).Length;
        }
    }
}

/// <summary>One bitmap as qemu-img info lists it (formats.md §2.9).</summary>
internal sealed record BitmapInfo(string Name, long Granularity, bool InUse, bool Auto)
{
    /// <summary>The flag names in qemu-img's order.</summary>
    public IEnumerable<string> Flags
    {
        get
        {
            if (InUse)
            {
                yield return "in-use";
            }

            if (Auto)
            {
                yield return "auto";
            }
        }
    }
}
