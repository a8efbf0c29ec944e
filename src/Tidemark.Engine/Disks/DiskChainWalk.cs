using Tidemark.Storage;

namespace Tidemark.Engine.Disks;

/// <summary>
/// libvirt's walk down a disk's backing chain before the disk is opened
/// (virStorageSourceGetMetadataRecurse): each header read without opening what it names, a
/// missing backing file reported against the disk's own file, and a backing file whose format
/// its overlay does not store probed only when what the probe finds names no backing file of
/// its own; a loop, or more than 200 images, is refused. A guest can write any header into a
/// raw image, so a probed layer is never allowed to lead anywhere else (a host file named as its
/// backing file). Where the disk's definition states the chain (<c>&lt;backingStore&gt;</c>),
/// the walk follows it and reads the headers only below it, as libvirt does.
/// </summary>
internal static class DiskChainWalk
{
    /// <summary>The deepest chain libvirt's QEMU driver walks: 200 images.</summary>
    public const int MaxDepth = 200;

    /// <exception cref="EngineException">A backing file is missing, a probed layer has a backing file of its own, or the chain loops or is deeper than <see cref="MaxDepth"/>.</exception>
    /// <exception cref="IOException">The disk's own file cannot be read.</exception>
    /// <exception cref="StorageException">A header in the chain breaks its format.</exception>
    /// <param name="below">The chain as the disk's definition states it (followed where it is stated, from the headers below it).</param>
    public static async Task CheckAsync(string path, ImageFormat format, StatedBacking? below, CancellationToken cancellationToken)
    {
        var top = Path.IsPathRooted(path) ? path : Path.GetFullPath(path);
        var walked = new List<(string Path, string Real)>();
        var current = top;
        ImageFormat? stated = format;
        (string Path, string BackingName)? overlay = null;
        while (true)
        {
            var real = DiskImage.RealPath(current);
            var again = walked.FindIndex(w => w.Real == real);
            if (again >= 0 || walked.Count == MaxDepth)
            {
                // libvirt walks a loop round and round until the depth runs out, and names the
                // image it has reached then.
                var deepest = again < 0 ? current : walked[again + ((MaxDepth - again) % (walked.Count - again))].Path;
                throw new EngineException(EngineErrorReason.ChainTooDeep, $"backing store for {deepest} is self-referential or too deeply nested");
            }

            walked.Add((current, real));
            string? backingName;
            ImageFormat? backingFormat;
            var fromDefinition = below is not null;
            if (below is not null)
            {
                // Stated in the definition: the headers are not asked (qemuDomainDetermineDiskChain).
                (backingName, backingFormat, below) = (below.Path, below.Format, below.Below);
            }
            else
            {
                var layer = await BackingChain.ReadLayerAsync(current, stated, cancellationToken).ConfigureAwait(false);
                if (stated is null && layer.BackingName is not null && overlay is { } above)
                {
                    throw new EngineException(EngineErrorReason.UnstatedBackingFormat, $"format of backing image '{above.BackingName}' of image '{above.Path}' was not specified in the image metadata (See https://libvirt.org/kbase/backing_chains.html for troubleshooting)");
                }

                (backingName, backingFormat) = (layer.BackingName, layer.BackingFormat);
            }

            if (backingName is null)
            {
                return;
            }

            var next = DiskImage.ResolveBackingPath(current, backingName);
            if (!File.Exists(next))
            {
                // A layer the definition states is checked as a source of its own; one a header
                // names is reported against the disk's own file, whatever its depth
                // (virStorageSourceReportBrokenChain).
                throw new EngineException(EngineErrorReason.ImageInaccessible, fromDefinition
                    ? $"Cannot access storage file '{next}' (as uid:{ProcessIdentity.UserId}, gid:{ProcessIdentity.GroupId}): No such file or directory"
                    : $"Cannot access backing file '{next}' of storage file '{top}' (as uid:{ProcessIdentity.UserId}, gid:{ProcessIdentity.GroupId}): No such file or directory");
            }

            overlay = (current, backingName);
            current = next;
            stated = backingFormat;
        }
    }
}
