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

    /// <summary>qcow2 only: the persistent bitmaps, in directory order (name, granularity, flags).</summary>
    public IReadOnlyList<BitmapInfo> Bitmaps { get; init; } = [];

    public static ImageInfo Describe(IBlockImage image, string path)
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
                FullBackingFilename = q.BackingFileName is null ? null : DiskImage.ResolveBackingPath(q.Path, q.BackingFileName),
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
