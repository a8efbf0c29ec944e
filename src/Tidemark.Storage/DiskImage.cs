using System.Buffers.Binary;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Storage;

/// <summary>Opens image files by format (given or probed) and resolves backing files.</summary>
public static class DiskImage
{
    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/>, or probes it (qcow2 magic, else raw).</summary>
    /// <exception cref="StorageException">The image cannot be opened (see <see cref="Qcow2Image.OpenAsync(string, bool, CancellationToken)"/>).</exception>
    public static ValueTask<IBlockImage> OpenAsync(string path, ImageFormat? format, bool readOnly, CancellationToken cancellationToken = default)
        => OpenAsync(path, format, readOnly, backing: null, cancellationToken);

    /// <summary>
    /// As <see cref="OpenAsync(string, ImageFormat?, bool, CancellationToken)"/>, the backing
    /// chain as <paramref name="backing"/> states it where it states it, and as the headers name
    /// it below that.
    /// </summary>
    public static ValueTask<IBlockImage> OpenAsync(string path, ImageFormat? format, bool readOnly, StatedBacking? backing, CancellationToken cancellationToken = default)
        => OpenAsync(path, format, readOnly, backing, shareWrites: false, cancellationToken);

    /// <summary>
    /// As <see cref="OpenAsync(string, ImageFormat?, bool, StatedBacking?, CancellationToken)"/>;
    /// a raw image opened with <paramref name="shareWrites"/> lets others write it meanwhile
    /// (<see cref="RawImage.Open"/>). A qcow2 image never does: its metadata has one writer, so
    /// QEMU's qcow2 driver denies other writers whatever the device shares.
    /// </summary>
    public static async ValueTask<IBlockImage> OpenAsync(string path, ImageFormat? format, bool readOnly, StatedBacking? backing, bool shareWrites, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var actual = format ?? await ProbeAsync(path, cancellationToken).ConfigureAwait(false);
        return actual == ImageFormat.Qcow2
            ? await Qcow2Image.OpenAsync(path, readOnly, [], backing, cancellationToken).ConfigureAwait(false)
            : RawImage.Open(path, readOnly, shareWrites);
    }

    /// <summary>
    /// Opens <paramref name="path"/> read-only without its backing chain, as qemu-img info opens
    /// an image (BDRV_O_NO_BACKING): the image's own metadata is all there is to describe, so a
    /// missing backing file does not stop it. Unallocated clusters read as zeroes; this is for
    /// describing an image, never for reading its guest-visible data.
    /// </summary>
    /// <exception cref="StorageException">The image cannot be opened.</exception>
    public static async ValueTask<IBlockImage> OpenWithoutBackingAsync(string path, ImageFormat? format, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var actual = format ?? await ProbeAsync(path, cancellationToken).ConfigureAwait(false);
        return actual == ImageFormat.Qcow2
            ? await Qcow2Image.OpenDetachedAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false)
            : RawImage.Open(path, readOnly: true);
    }

    /// <summary>qcow2 when the file starts with the qcow2 magic, raw otherwise (what QEMU's probe does for these two).</summary>
    public static async ValueTask<ImageFormat> ProbeAsync(string path, CancellationToken cancellationToken = default)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
        var magic = new byte[4];
        var n = await RandomAccess.ReadAsync(handle, magic, 0, cancellationToken).ConfigureAwait(false);
        return HasQcow2Magic(magic.AsSpan(0, n)) ? ImageFormat.Qcow2 : ImageFormat.Raw;
    }

    /// <summary>Whether a file's first bytes start with the qcow2 magic: the whole of the probe.</summary>
    internal static bool HasQcow2Magic(ReadOnlySpan<byte> start)
        => start.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(start) == Qcow2Layout.Magic;

    /// <summary>
    /// The path a backing file name refers to: absolute names as they are, relative names joined
    /// to the directory of the image that names them and left as joined, "../" and all, as QEMU
    /// (path_combine) and libvirt (virStorageSourceNewFromBackingRelative) name them, so the
    /// path shows as they show it. Compare such paths through <see cref="RealPath"/>.
    /// </summary>
    public static string ResolveBackingPath(string imagePath, string backingName)
    {
        if (Path.IsPathRooted(backingName))
        {
            return backingName;
        }

        var image = Path.IsPathRooted(imagePath) ? imagePath : Path.GetFullPath(imagePath);
        return Path.Join(Path.GetDirectoryName(image) ?? "/", backingName);
    }

    /// <param name="below">What is stated of the backing file's own backing file (<see cref="StatedBacking.Below"/>).</param>
    internal static async ValueTask<IBlockImage> OpenBackingAsync(string imagePath, string backingName, string? backingFormat, IReadOnlyList<string> chain, StatedBacking? below, CancellationToken cancellationToken)
    {
        var path = ResolveBackingPath(imagePath, backingName);
        if (chain.Count >= Qcow2Layout.MaxBackingChainDepth)
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"{imagePath}: backing chain is deeper than {Qcow2Layout.MaxBackingChainDepth} images");
        }

        if (!File.Exists(path))
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"{imagePath}: Could not open backing file '{backingName}' ({path}): No such file or directory");
        }

        var real = RealPath(path);
        if (chain.Any(p => RealPath(p) == real))
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"{imagePath}: backing file '{backingName}' makes a loop in the backing chain ({string.Join(" -> ", chain)} -> {path})");
        }

        ImageFormat format;
        try
        {
            format = backingFormat is null ? await ProbeAsync(path, cancellationToken).ConfigureAwait(false) : ImageFormatNames.Parse(backingFormat);
        }
        catch (StorageException e)
        {
            throw new StorageException(StorageErrorReason.BackingChain, $"{imagePath}: backing format '{backingFormat}': {e.Message}", e);
        }

        return format == ImageFormat.Qcow2
            ? await Qcow2Image.OpenAsync(path, readOnly: true, chain, below, cancellationToken).ConfigureAwait(false)
            : RawImage.Open(path, readOnly: true);
    }

    /// <summary>
    /// The length of the file at <paramref name="path"/>, or a block device's size (where
    /// <see cref="FileInfo.Length"/> says 0): what QEMU's file-posix and host_device drivers
    /// report as the file's length. Takes no lock.
    /// </summary>
    public static long FileLength(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return HostFile.LengthOf(handle, path);
    }

    /// <summary>
    /// The bytes the file system holds for the file at <paramref name="path"/> (st_blocks * 512,
    /// 0 for a block device): QEMU's "actual-size", libvirt's allocation of a file. Takes no lock.
    /// </summary>
    public static long AllocatedBytes(string path) => Sizes(path).Allocated;

    /// <summary><see cref="FileLength"/> and <see cref="AllocatedBytes"/> together, from one open of the file.</summary>
    public static (long Length, long Allocated) Sizes(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return (HostFile.LengthOf(handle, path), HostFile.AllocatedBytesOf(handle, path));
    }

    /// <summary>The file an opened image reads, or null for an image that is not a file's (a view, a wrapper).</summary>
    public static string? PathOf(IBlockImage? image) => image switch
    {
        Qcow2Image q => q.Path,
        RawImage r => r.Path,
        _ => null,
    };

    /// <summary>Whether <paramref name="path"/> is a block device (a logical volume, a partition, a loop device); false when it does not exist.</summary>
    public static bool IsBlockDevice(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return HostFile.IsBlockDeviceHandle(handle);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The path with every symbolic link resolved (how QEMU compares images of a chain).</summary>
    public static string RealPath(string path)
    {
        var info = new FileInfo(path);
        var target = info.ResolveLinkTarget(returnFinalTarget: true);
        return target?.FullName ?? info.FullName;
    }
}
