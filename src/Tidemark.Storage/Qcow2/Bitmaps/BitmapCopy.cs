namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// Copies persistent dirty bitmaps from one qcow2 image to another, as <c>qemu-img convert
/// --bitmaps</c> does (convert_check_bitmaps before anything is written, convert_copy_bitmaps
/// after the data): each bitmap is added to the target with its name, granularity and enabled
/// state, then the source's bits are merged into it. Added after the data copy, the target's
/// bitmaps record none of the copy's writes.
/// </summary>
public static class BitmapCopy
{
    /// <summary>Refuses a source whose bitmaps cannot be copied, in qemu-img's words.</summary>
    /// <param name="skipBroken">Inconsistent bitmaps are left out instead of refused (--skip-broken-bitmaps).</param>
    /// <exception cref="StorageException">The source cannot hold bitmaps (v2), or holds an inconsistent one.</exception>
    public static void CheckSource(Qcow2Image source, bool skipBroken)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Version < 3)
        {
            throw new StorageException(StorageErrorReason.InvalidRequest, "Source lacks bitmap support");
        }

        // QEMU keeps an image's bitmaps newest first (bdrv_create_dirty_bitmap inserts at the
        // head), so with several broken ones it names the last one the directory lists.
        foreach (var bitmap in source.Bitmaps.Bitmaps.Reverse())
        {
            if (bitmap.Persistent && bitmap.Inconsistent && !skipBroken)
            {
                throw new StorageException(StorageErrorReason.BitmapInconsistent, $"Cannot copy inconsistent bitmap '{bitmap.Name}'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it");
            }
        }
    }

    /// <summary>Refuses a target that cannot hold bitmaps (raw, or qcow2 v2), in qemu-img's words.</summary>
    /// <exception cref="StorageException">The target cannot hold persistent bitmaps.</exception>
    public static void CheckTarget(IBlockImage target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target is not Qcow2Image { Version: >= 3 })
        {
            var format = target is Qcow2Image ? "qcow2" : "raw";
            throw new StorageException(StorageErrorReason.InvalidRequest, $"Format driver '{format}' does not support bitmaps");
        }
    }

    /// <summary>Copies every persistent bitmap; returns the names of inconsistent ones left out.</summary>
    /// <exception cref="StorageException">The target already has a bitmap of that name ("Failed to create bitmap NAME: Bitmap already exists: NAME"), or cannot take it.</exception>
    public static async ValueTask<IReadOnlyList<string>> CopyAsync(Qcow2Image source, Qcow2Image target, bool skipBroken, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        CheckSource(source, skipBroken);
        var skipped = new List<string>();
        foreach (var bitmap in source.Bitmaps.Bitmaps)
        {
            if (!bitmap.Persistent)
            {
                continue;
            }

            if (bitmap.Inconsistent)
            {
                skipped.Add(bitmap.Name);
                continue;
            }

            try
            {
                await target.Bitmaps.AddAsync(bitmap.Name, bitmap.Granularity, bitmap.Enabled, persistent: true, cancellationToken).ConfigureAwait(false);
            }
            catch (StorageException e)
            {
                throw new StorageException(e.Reason, $"Failed to create bitmap {bitmap.Name}: {e.Message}", e);
            }

            await target.Bitmaps.MergeAsync(bitmap.Name, bitmap.Bitmap, cancellationToken).ConfigureAwait(false);
        }

        return skipped;
    }
}
