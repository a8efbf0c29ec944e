using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>One image of a backing chain, as its header and its overlay's header describe it.</summary>
/// <param name="Path">The image file (absolute).</param>
/// <param name="Format">Its format (from the overlay's backing format extension, else probed).</param>
/// <param name="BackingName">The backing file name its header stores, or null.</param>
/// <param name="BackingFormat">The backing format its header stores, or null.</param>
public sealed record BackingLayer(string Path, ImageFormat Format, string? BackingName, ImageFormat? BackingFormat);

/// <summary>
/// Reads a backing chain from the images' headers alone, without opening any image's data
/// through its chain: what rebase and commit need to find a base, refuse a loop, and open each
/// layer by itself (a layer open for writing cannot also be open read-only as part of a chain,
/// formats.md §1.8).
/// </summary>
public static class BackingChain
{
    /// <summary>
    /// The chain of <paramref name="path"/>, top first. With <paramref name="stopAtMissing"/> a
    /// missing backing file ends the list; otherwise it is an error, in qemu-img's words.
    /// </summary>
    /// <exception cref="StorageException">A backing file is missing, an image cannot be opened, the chain loops ("creates an infinite loop") or is deeper than QEMU allows.</exception>
    public static async ValueTask<IReadOnlyList<BackingLayer>> ReadAsync(string path, ImageFormat? format, bool stopAtMissing, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var layers = new List<BackingLayer>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var current = Path.GetFullPath(path);
        var currentFormat = format;
        while (true)
        {
            if (!seen.Add(DiskImage.RealPath(current)))
            {
                // bdrv_open_backing_file's refusal when a chain comes back to one of its images.
                throw new StorageException(StorageErrorReason.BackingChain, $"Backing file '{layers[^1].BackingName}' creates an infinite loop.");
            }

            if (layers.Count >= Qcow2Layout.MaxBackingChainDepth)
            {
                throw new StorageException(StorageErrorReason.BackingChain, $"{path}: backing chain is deeper than {Qcow2Layout.MaxBackingChainDepth} images");
            }

            var image = await DiskImage.OpenWithoutBackingAsync(current, currentFormat, cancellationToken).ConfigureAwait(false);
            BackingLayer layer;
            await using (image.ConfigureAwait(false))
            {
                layer = image is Qcow2Image q
                    ? new BackingLayer(current, ImageFormat.Qcow2, q.BackingFileName, q.BackingFormat is null ? null : ImageFormatNames.Parse(q.BackingFormat))
                    : new BackingLayer(current, ImageFormat.Raw, null, null);
            }

            layers.Add(layer);
            if (layer.BackingName is null)
            {
                return layers;
            }

            var next = DiskImage.ResolveBackingPath(current, layer.BackingName);
            if (!File.Exists(next))
            {
                if (stopAtMissing)
                {
                    return layers;
                }

                throw new StorageException(StorageErrorReason.BackingChain, $"Could not open backing file: Could not open '{next}': No such file or directory");
            }

            current = next;
            currentFormat = layer.BackingFormat;
        }
    }

    /// <summary>
    /// One image's own header, read as libvirt reads a chain before QEMU opens it: without
    /// QEMU's locks (an image another process holds is still described) and without opening
    /// anything it names. With no <paramref name="format"/> the same read probes it (qcow2 magic,
    /// else raw, as <see cref="DiskImage.ProbeAsync"/>). A raw image names no backing file.
    /// </summary>
    /// <exception cref="StorageException">A qcow2 header that breaks the format.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static async ValueTask<BackingLayer> ReadLayerAsync(string path, ImageFormat? format, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.IsPathRooted(path) ? path : Path.GetFullPath(path);
        if (format == ImageFormat.Raw)
        {
            return new BackingLayer(full, ImageFormat.Raw, null, null);
        }

        using var handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
        var probe = new byte[Qcow2Header.ProbeLength];
        var read = await RandomAccess.ReadAsync(handle, probe, 0, cancellationToken).ConfigureAwait(false);
        if (format is null && !DiskImage.HasQcow2Magic(probe.AsSpan(0, read)))
        {
            return new BackingLayer(full, ImageFormat.Raw, null, null);
        }

        var cluster0 = new byte[1 << Qcow2Header.ReadClusterBits(probe.AsSpan(0, read), full)];
        await RandomAccess.ReadAsync(handle, cluster0, 0, cancellationToken).ConfigureAwait(false);
        var header = Qcow2Header.Parse(cluster0, HostFile.LengthOf(handle, full), full);
        return new BackingLayer(full, ImageFormat.Qcow2, header.BackingFile, header.BackingFormat is null ? null : ImageFormatNames.Parse(header.BackingFormat));
    }

    /// <summary>
    /// Where <paramref name="name"/> appears below the top of <paramref name="layers"/>: the
    /// index of the layer it names, or -1. As QEMU's bdrv_find_backing_image, the name is taken
    /// relative to each overlay's directory in turn and compared with the overlay's own backing
    /// file after resolving symbolic links.
    /// </summary>
    public static int Find(IReadOnlyList<BackingLayer> layers, string name)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentException.ThrowIfNullOrEmpty(name);
        for (var i = 1; i < layers.Count; i++)
        {
            var candidate = DiskImage.ResolveBackingPath(layers[i - 1].Path, name);
            if (File.Exists(candidate) && DiskImage.RealPath(candidate) == DiskImage.RealPath(layers[i].Path))
            {
                return i;
            }
        }

        return -1;
    }
}
