namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>The bitmap refusals whose words come from QEMU, in one place.</summary>
internal static class BitmapErrors
{
    /// <summary>QEMU's words for using an inconsistent bitmap, with a hint how to get rid of it (formats.md §2.7).</summary>
    public static StorageException Inconsistent(string name) =>
        new(StorageErrorReason.BitmapInconsistent, $"Bitmap '{name}' is inconsistent and cannot be used; try 'tidemark image bitmap --remove' to delete it from disk");

    /// <summary>QEMU's words for a missing bitmap.</summary>
    public static StorageException Missing(string name) =>
        new(StorageErrorReason.BitmapNotFound, $"Dirty bitmap '{name}' not found");
}
