using Tidemark.Formats.Domains;
using Tidemark.Storage;

namespace Tidemark.Engine.Disks;

/// <summary>Opens a domain disk's image as the engine needs it, with storage errors in libvirt's terms.</summary>
internal static class DiskImages
{
    /// <summary>
    /// Opens <paramref name="disk"/>'s source: the format its driver names (qcow2 or raw), its
    /// backing chain checked first as libvirt checks it (<see cref="DiskChainWalk"/>).
    /// Read-write opens take QEMU's write locks.
    /// </summary>
    /// <exception cref="EngineException">An unsupported source or format, a locked image, or one that cannot be opened.</exception>
    public static async Task<(IBlockImage Image, ImageFormat Format)> OpenAsync(DomainDisk disk, bool readOnly, CancellationToken cancellationToken)
    {
        if (disk.Type is not (DiskSourceType.File or DiskSourceType.Block) || disk.SourcePath is null)
        {
            throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': source type '{DomainDiskNames.Of(disk.Type)}' is not supported, only local files and block devices");
        }

        if (disk.Sliced)
        {
            // QEMU's raw driver would show the guest the slice alone (its offset and size
            // options); serving the whole file instead would hand the guest what is not its own.
            throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': storage slices (<slices>) are not supported");
        }

        if (disk.Type == DiskSourceType.Block && File.Exists(disk.SourcePath) && !DiskImage.IsBlockDevice(disk.SourcePath))
        {
            // QEMU's host_device driver (hdev_open), which libvirt uses for type='block'.
            throw new EngineException(EngineErrorReason.ImageFailed, $"cannot open disk '{disk.TargetDev}': 'host_device' driver requires '{disk.SourcePath}' to be either a character or block device");
        }

        try
        {
            ImageFormat? format = disk.DriverType switch
            {
                null => null,
                "qcow2" => ImageFormat.Qcow2,
                "raw" => ImageFormat.Raw,
                _ => throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': unsupported storage format '{disk.DriverType}'"),
            };
            var actual = format ?? await UnstatedFormatAsync(disk, cancellationToken).ConfigureAwait(false);
            var stated = Stated(disk, disk.BackingStore);
            if (actual == ImageFormat.Qcow2)
            {
                await DiskChainWalk.CheckAsync(disk.SourcePath, actual, stated, cancellationToken).ConfigureAwait(false);
            }

            // A shareable disk is opened as QEMU opens a device with share-rw=on (libvirt sets it
            // for <shareable/>): other domains may write a raw image meanwhile.
            var image = await DiskImage.OpenAsync(disk.SourcePath, actual, readOnly, stated, disk.Shareable, cancellationToken).ConfigureAwait(false);
            return (image, actual);
        }
        catch (StorageException e) when (e.Reason == StorageErrorReason.Locked)
        {
            throw new EngineException(EngineErrorReason.ImageLocked, e.Message, e);
        }
        catch (StorageException e)
        {
            throw new EngineException(EngineErrorReason.ImageFailed, $"cannot open disk '{disk.TargetDev}': {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // libvirt's own check before QEMU starts (virStorageSourceReportBrokenChain).
            throw HostErrno.Of(e) is null
                ? new EngineException(EngineErrorReason.ImageFailed, $"cannot open disk '{disk.TargetDev}' ({disk.SourcePath}): {e.Message}", e)
                : new EngineException(EngineErrorReason.ImageInaccessible, $"Cannot access storage file '{disk.SourcePath}' (as uid:{ProcessIdentity.UserId}, gid:{ProcessIdentity.GroupId}): {HostErrno.Describe(e)}", e);
        }
    }

    /// <summary>
    /// The backing chain the disk's <c>&lt;backingStore&gt;</c> states, which libvirt gives QEMU
    /// in place of what the headers name (and stops at an empty <c>&lt;backingStore/&gt;</c>);
    /// null when the definition states none.
    /// </summary>
    private static StatedBacking? Stated(DomainDisk disk, DomainBackingStore? store) => store switch
    {
        null => null,
        { Type: null } => StatedBacking.None,
        { Type: not (DiskSourceType.File or DiskSourceType.Block) } => throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': backing store source type '{DomainDiskNames.Of(store.Type.Value)}' is not supported, only local files and block devices"),
        { SourcePath: null } => throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': a backing store names no source"),
        { Format: "qcow2" or "raw" } => new StatedBacking(store.SourcePath, ImageFormatNames.Parse(store.Format), Stated(disk, store.Next)),
        { Format: null } => throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': backing store '{store.SourcePath}' names no format"),
        _ => throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}': unsupported storage format '{store.Format}' of backing store '{store.SourcePath}'"),
    };

    /// <summary>
    /// The format of a disk whose definition names none: only definitions stored before the
    /// disk defaults were filled in at define (<see cref="Domains.DiskDefaults"/>) lack it.
    /// libvirt takes such a disk as raw. A raw file is raw; one with a qcow2 header is refused
    /// rather than handed to the guest as raw bytes it would overwrite, or opened as qcow2 on the
    /// word of a header a guest may have written.
    /// </summary>
    private static async Task<ImageFormat> UnstatedFormatAsync(DomainDisk disk, CancellationToken cancellationToken)
    {
        var path = disk.SourcePath!;
        return await DiskImage.ProbeAsync(path, cancellationToken).ConfigureAwait(false) == ImageFormat.Raw
            ? ImageFormat.Raw
            : throw new EngineException(EngineErrorReason.UnsupportedDisk, $"disk '{disk.TargetDev}' names no format and '{path}' has a qcow2 header: state it in the disk's <driver type='…'/> (formats are not probed)");
    }

    /// <summary>Maps a storage failure during an operation on an open image to the engine's error.</summary>
    public static EngineException Failure(string what, Exception e)
        => e is StorageException { Reason: StorageErrorReason.Locked }
            ? new EngineException(EngineErrorReason.ImageLocked, e.Message, e)
            : new EngineException(EngineErrorReason.ImageFailed, $"{what}: {e.Message}", e);
}
