using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Engine.Disks;

/// <summary>
/// One checkpoint's bitmaps down a disk's backing chain (spec §6.6, §6.8): the same-named
/// bitmap in the top image and in each layer below it that an external snapshot copied it into.
/// </summary>
internal static class BitmapChain
{
    /// <summary>The layers of <paramref name="top"/>'s chain, top first.</summary>
    public static IReadOnlyList<IBlockImage> Layers(IBlockImage top)
    {
        var layers = new List<IBlockImage>();
        for (IBlockImage? layer = top; layer is not null; layer = (layer as Qcow2Image)?.Backing)
        {
            layers.Add(layer);
        }

        return layers;
    }

    /// <summary>
    /// The run of bitmaps named <paramref name="name"/> from the top down, or null when the
    /// chain is not valid (spec §6.6): the top image must hold it, the layers holding it must
    /// be one unbroken run from the top, and each must be recording, persistent and consistent
    /// (not found IN_USE at open).
    /// </summary>
    public static IReadOnlyList<Qcow2Bitmap>? ValidRun(IBlockImage top, string name)
    {
        var run = new List<Qcow2Bitmap>();
        var ended = false;
        foreach (var layer in Layers(top))
        {
            var bitmap = (layer as Qcow2Image)?.Bitmaps.Find(name);
            if (bitmap is null)
            {
                ended = true;
                continue;
            }

            if (ended || !bitmap.Enabled || !bitmap.Persistent || bitmap.Inconsistent)
            {
                return null;
            }

            run.Add(bitmap);
        }

        return run.Count == 0 ? null : run;
    }

    /// <summary>
    /// A fresh copy of bitmap <paramref name="name"/> merged across the valid run (spec §6.8),
    /// covering the top image's size at the granularity of the top layer's bitmap; null when
    /// the chain is not valid.
    /// </summary>
    public static DirtyBitmap? Merge(IBlockImage top, string name)
    {
        if (ValidRun(top, name) is not { } run)
        {
            return null;
        }

        var merged = new DirtyBitmap(top.VirtualSize, run[0].Granularity);
        foreach (var bitmap in run)
        {
            var source = bitmap.Bitmap;
            if (source.Size == merged.Size)
            {
                merged.Merge(source);
                continue;
            }

            // A backing layer of another size: its dirty runs, clipped to the top's size.
            foreach (var extent in source.EnumerateDirtyExtents(0, Math.Min(source.Size, merged.Size)))
            {
                merged.SetRange(extent.Offset, extent.Length);
            }
        }

        return merged;
    }
}
