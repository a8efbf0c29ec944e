using System.Numerics;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// The bitmap refusals whose words come from QEMU, in one place: the bitmap set raises them,
/// and a caller that checks a sequence of operations before opening an image read-write
/// (validate before mutate) raises the same ones.
/// </summary>
public static class BitmapErrors
{
    /// <summary>QEMU's words for using an inconsistent bitmap, with a hint how to get rid of it (formats.md §2.7).</summary>
    public static StorageException Inconsistent(string name) =>
        new(StorageErrorReason.BitmapInconsistent, $"Bitmap '{name}' is inconsistent and cannot be used; try 'tidemark image bitmap --remove' to delete it from disk");

    /// <summary>QEMU's words for a missing bitmap.</summary>
    public static StorageException Missing(string name) =>
        new(StorageErrorReason.BitmapNotFound, $"Dirty bitmap '{name}' not found");

    /// <summary>QEMU's words for adding a bitmap whose name is taken.</summary>
    public static StorageException Exists(string name) =>
        new(StorageErrorReason.BitmapExists, $"Bitmap already exists: {name}");

    /// <summary>QEMU's words for a persistent bitmap in a version 2 image.</summary>
    public static StorageException VersionTwo() =>
        new(StorageErrorReason.InvalidRequest, "Cannot store dirty bitmaps in qcow2 v2 files");

    /// <summary>Refuses a granularity QEMU refuses, in its words (block/dirty-bitmap.c, block/qcow2-bitmap.c).</summary>
    /// <exception cref="StorageException"><see cref="StorageErrorReason.InvalidRequest"/>: not a power of two, below 512 or above 2 GiB.</exception>
    public static void CheckGranularity(long granularity)
    {
        if (granularity < 1L << DirtyBitmap.MinGranularityBits || !BitOperations.IsPow2(granularity))
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Granularity must be power of 2 and at least {1L << DirtyBitmap.MinGranularityBits}");
        }

        if (granularity > 1L << DirtyBitmap.MaxGranularityBits)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Granularity exceeds maximum ({1L << DirtyBitmap.MaxGranularityBits} bytes)");
        }
    }
}
