using Tidemark.Storage;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Cli.Commands.Image.Bitmap;

/// <summary>
/// Validate before mutate for <c>image bitmap</c>. Opening an image read-write already writes
/// it (every bitmap is marked IN_USE), so each refusal that can be foreseen is found first on
/// a read-only open: the operations are played in order against the bitmap names, with the
/// bitmap set's own refusals (QEMU's words), and the image's metadata is checked as
/// <c>qemu-img check</c> checks it. A refused command leaves the file byte for byte as it was.
/// </summary>
internal static class BitmapPlan
{
    /// <exception cref="CliException">An operation would fail, or the image's metadata is damaged; the message says which.</exception>
    public static async Task CheckAsync(BitmapSettings settings, long? granularity, Qcow2Image image, Qcow2Image? source, CancellationToken cancellationToken)
    {
        // Name → inconsistent, as the operations so far would leave them.
        var names = image.Bitmaps.Bitmaps.ToDictionary(b => b.Name, b => b.Inconsistent, StringComparer.Ordinal);
        foreach (var operation in settings.Operations)
        {
            try
            {
                Play(names, image, source, settings.Bitmap, operation, granularity);
            }
            catch (StorageException e)
            {
                throw BitmapCommand.Failed(operation, settings.Bitmap, e);
            }
        }

        Qcow2CheckResult check;
        try
        {
            check = await Qcow2Check.RunAsync(image.Path, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException e)
        {
            throw new CliException($"Could not open '{settings.File}' read-write: {e.Message}", e);
        }

        if (check.Corruptions > 0 || check.CheckErrors > 0)
        {
            throw new CliException($"Could not open '{settings.File}' read-write: its metadata is damaged ({check.Corruptions + check.CheckErrors} errors, see 'qemu-img check'); repair it with 'qemu-img check -r all' first");
        }
    }

    private static void Play(Dictionary<string, bool> names, Qcow2Image image, Qcow2Image? source, string name, BitmapOperation operation, long? granularity)
    {
        switch (operation.Kind)
        {
            case BitmapOperationKind.Add:
                BitmapErrors.CheckGranularity(granularity ?? image.Bitmaps.DefaultGranularity);
                if (names.ContainsKey(name))
                {
                    throw BitmapErrors.Exists(name);
                }

                if (image.Version < 3)
                {
                    throw BitmapErrors.VersionTwo();
                }

                names[name] = false;
                break;
            case BitmapOperationKind.Remove:
                if (!names.Remove(name))
                {
                    throw BitmapErrors.Missing(name);
                }

                break;
            default:
                if (operation.Kind == BitmapOperationKind.Merge)
                {
                    CheckUsable(source is null ? names : source.Bitmaps.Bitmaps.ToDictionary(b => b.Name, b => b.Inconsistent, StringComparer.Ordinal), operation.Source!);
                }

                CheckUsable(names, name);
                break;
        }
    }

    private static void CheckUsable(Dictionary<string, bool> names, string name)
    {
        if (!names.TryGetValue(name, out var inconsistent))
        {
            throw BitmapErrors.Missing(name);
        }

        if (inconsistent)
        {
            throw BitmapErrors.Inconsistent(name);
        }
    }
}
