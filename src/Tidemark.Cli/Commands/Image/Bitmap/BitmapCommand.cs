using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Bitmap;

/// <summary>
/// Runs <c>image bitmap</c> the way qemu-img does: open FILE read-write (which marks its
/// bitmaps IN_USE), run the operations in order in memory, then close, which stores the
/// bitmaps and clears IN_USE (formats.md §2.6). A removal is written at once. Nothing is
/// printed on success; a failed operation is one error line naming it, exit status 1.
/// Unlike qemu-img, the operations are first checked on a read-only open (<see cref="BitmapPlan"/>),
/// so a refused command does not touch the file.
/// </summary>
internal static class BitmapCommand
{
    public static async Task<int> RunAsync(BitmapSettings settings, CancellationToken cancellationToken)
    {
        Validate(settings);
        long? granularity = settings.Granularity is null ? null : ImageArguments.ParseSize(settings.Granularity, "granularity");

        Qcow2Image? source = null;
        try
        {
            if (settings.SourceFile is not null)
            {
                source = await OpenQcow2Async(settings.SourceFile, readOnly: true, cancellationToken).ConfigureAwait(false);
            }

            var readOnly = await OpenQcow2Async(settings.File, readOnly: true, cancellationToken).ConfigureAwait(false);
            await using (readOnly.ConfigureAwait(false))
            {
                await BitmapPlan.CheckAsync(settings, granularity, readOnly, source, cancellationToken).ConfigureAwait(false);
            }

            var image = await OpenQcow2Async(settings.File, readOnly: false, cancellationToken).ConfigureAwait(false);
            await using var closeImage = image.ConfigureAwait(false);

            foreach (var operation in settings.Operations)
            {
                try
                {
                    await RunAsync(image, source ?? image, settings.Bitmap, operation, granularity, cancellationToken).ConfigureAwait(false);
                }
                catch (StorageException e)
                {
                    throw Failed(operation, settings.Bitmap, e);
                }
            }
        }
        finally
        {
            if (source is not null)
            {
                await source.DisposeAsync().ConfigureAwait(false);
            }
        }

        return 0;
    }

    /// <summary>qemu-img's words for a failed operation.</summary>
    public static CliException Failed(BitmapOperation operation, string bitmap, StorageException e)
        => new($"Operation {operation.Kind.ToString().ToLowerInvariant()} on bitmap {bitmap} failed: {e.Message}", e);

    private static async ValueTask RunAsync(Qcow2Image image, Qcow2Image source, string name, BitmapOperation operation, long? granularity, CancellationToken cancellationToken)
    {
        var bitmaps = image.Bitmaps;
        switch (operation.Kind)
        {
            case BitmapOperationKind.Add:
                await bitmaps.AddAsync(name, granularity, cancellationToken: cancellationToken).ConfigureAwait(false);
                break;
            case BitmapOperationKind.Remove:
                await bitmaps.RemoveAsync(name, cancellationToken).ConfigureAwait(false);
                break;
            case BitmapOperationKind.Clear:
                await bitmaps.ClearAsync(name, cancellationToken).ConfigureAwait(false);
                break;
            case BitmapOperationKind.Enable:
                await bitmaps.EnableAsync(name, cancellationToken).ConfigureAwait(false);
                break;
            case BitmapOperationKind.Disable:
                await bitmaps.DisableAsync(name, cancellationToken).ConfigureAwait(false);
                break;
            case BitmapOperationKind.Merge:
                // Snapshot the source first, so merging a bitmap into itself or reading it while
                // it records cannot see a half-merged state.
                DirtyBitmap bits = source.Bitmaps.Get(operation.Source!).Bitmap.Clone();
                await bitmaps.MergeAsync(name, bits, cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    // qemu-img's own rules and words (qemu-img.c img_bitmap).
    private static void Validate(BitmapSettings settings)
    {
        if (settings.Operations.Count == 0)
        {
            throw new CliException("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
        }

        if (settings.Granularity is not null && !settings.Operations.Any(o => o.Kind == BitmapOperationKind.Add))
        {
            throw new CliException("granularity only supported with --add");
        }

        if (settings.SourceFormat is not null && settings.SourceFile is null)
        {
            throw new CliException("-F only supported with -b");
        }

        if (settings.SourceFile is not null && !settings.Operations.Any(o => o.Kind == BitmapOperationKind.Merge))
        {
            throw new CliException("Merge bitmap source file only supported with --merge");
        }

        foreach (var format in new[] { settings.Format, settings.SourceFormat })
        {
            if (format is not null && ImageArguments.ParseFormat(format) != ImageFormat.Qcow2)
            {
                throw new CliException($"Format '{format}' does not hold persistent bitmaps: only qcow2 does");
            }
        }
    }

    private static async Task<Qcow2Image> OpenQcow2Async(string path, bool readOnly, CancellationToken cancellationToken)
    {
        var image = await ImageArguments.OpenAsync(path, null, readOnly, cancellationToken).ConfigureAwait(false);
        if (image is Qcow2Image qcow2)
        {
            return qcow2;
        }

        await image.DisposeAsync().ConfigureAwait(false);
        throw new CliException($"'{path}' is not a qcow2 image: only qcow2 holds persistent bitmaps");
    }
}
