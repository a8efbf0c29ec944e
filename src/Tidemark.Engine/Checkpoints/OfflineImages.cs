using Tidemark.Engine.Disks;
using Tidemark.Formats.Domains;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// The top images of an inactive domain's disks, opened read-write for one checkpoint
/// operation (as <c>qemu-img bitmap</c> opens them) and closed together, which stores their
/// bitmaps. Every image is opened before any is changed, so a disk that is locked by another
/// process or cannot be opened fails the operation before anything was changed.
/// </summary>
internal sealed class OfflineImages : IAsyncDisposable
{
    private readonly Dictionary<string, (IBlockImage Image, ImageFormat Format)> _images;

    private OfflineImages(Dictionary<string, (IBlockImage, ImageFormat)> images)
    {
        _images = images;
    }

    /// <summary>Opens the images of <paramref name="targets"/> (disks of <paramref name="domain"/> with media).</summary>
    public static async Task<OfflineImages> OpenAsync(DomainDefinition domain, IEnumerable<string> targets, CancellationToken cancellationToken)
    {
        var images = new Dictionary<string, (IBlockImage, ImageFormat)>(StringComparer.Ordinal);
        var opened = new OfflineImages(images);
        try
        {
            foreach (var target in targets.Distinct(StringComparer.Ordinal))
            {
                if (domain.DiskByTarget(target) is { IsEmpty: false } disk)
                {
                    images.Add(target, await DiskImages.OpenAsync(disk, readOnly: false, cancellationToken).ConfigureAwait(false));
                }
            }
        }
        catch
        {
            await opened.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return opened;
    }

    /// <summary>The top image of disk <paramref name="target"/> and its format, or null when the disk is gone.</summary>
    public (IBlockImage Image, ImageFormat Format)? Get(string target) => _images.TryGetValue(target, out var entry) ? entry : null;

    /// <summary>The qcow2 top image of <paramref name="target"/>, or null.</summary>
    public Qcow2Image? Qcow2(string target) => Get(target)?.Image as Qcow2Image;

    public async ValueTask DisposeAsync()
    {
        Exception? first = null;
        foreach (var (image, _) in _images.Values)
        {
            try
            {
                await image.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is StorageException or IOException)
            {
                first ??= e;
            }
        }

        _images.Clear();
        if (first is not null)
        {
            throw DiskImages.Failure("cannot store the bitmaps", first);
        }
    }
}
