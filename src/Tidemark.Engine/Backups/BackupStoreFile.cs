using Tidemark.Engine.Disks;
using Tidemark.Formats.Backups;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Backups;

/// <summary>A push target or pull scratch, open for the job.</summary>
/// <param name="Image">The store image, open read-write (possibly wrapped by <see cref="BackupJobOptions.StoreWrapper"/>).</param>
/// <param name="Cluster">The store's cluster size (qcow2), 0 for raw.</param>
/// <param name="Zeroes">How the store takes zero clusters.</param>
internal sealed record OpenStore(IBlockImage Image, int Cluster, ZeroClusters Zeroes);

/// <summary>
/// Creates or opens a disk's store as libvirt's qemu driver does (spec §6.7 step 11, §6.9,
/// §6.10): a file store must not exist unless reuse-external is set, a block store must exist
/// and is formatted in place; the image takes the
/// disk's size and, for qcow2 over qcow2, its cluster size; an incremental qcow2 push target
/// and a pull scratch (always qcow2) name the live disk's top image as their backing file, as
/// libvirt writes them (spec §6.7 step 11: the scratch is an overlay of the disk).
/// </summary>
/// <remarks>
/// The live disk is open read-write in this process, so a qcow2 store is created or opened
/// without its backing chain: a second open of the live disk would conflict with its lock.
/// Nothing is lost: the job only writes whole clusters into a store and reads back from a
/// scratch only the clusters it copied there; the job's view reads the live image itself
/// everywhere else.
/// </remarks>
internal static class BackupStoreFile
{
    /// <summary>
    /// The scratch's cluster size: the job's copy granularity
    /// (<see cref="InstantClusters.ViewGranularity"/>, 4 KiB up to 256 GiB disks), where
    /// libvirt's scratch gets QEMU's default of 64 KiB (QEMU copies whole 64 KiB clusters
    /// aside). Copies then fill whole scratch clusters, so the scratch writes them behind the
    /// guest a batch at a time into clusters next to each other (<see cref="ScratchWriteBehind"/>,
    /// <see cref="Qcow2Image.WriteGatheredAsync"/>): the file grows front to back, as a log,
    /// and holds only what was copied. 2 MiB at most, the largest qcow2 allows.
    /// </summary>
    private static int ScratchClusterSize(long size) => (int)Math.Min(2 << 20, InstantClusters.ViewGranularity(size));

    /// <summary>A push target's cluster size over a raw disk: QEMU's default (over a qcow2 disk, the disk's own).</summary>
    private const int TargetClusterSize = 64 << 10;

    /// <param name="created">Gets the path once the file is about to be created, so that a failure removes it.</param>
    /// <exception cref="BackupJobException">The store exists, cannot be created or opened, or asks for what Tidemark does not implement.</exception>
    public static async ValueTask<OpenStore> OpenAsync(BackupMode mode, BackupDisk disk, BackupDiskSource source, BackupJobOptions options, Action<string> created, CancellationToken cancellationToken)
    {
        var store = disk.Store ?? throw new ArgumentException($"disk '{disk.Name}' has no store: align the backup first", nameof(disk));
        var path = store.Path ?? throw new ArgumentException($"disk '{disk.Name}' has no store path: align the backup first", nameof(disk));
        if (store.Encryption is not null)
        {
            throw new BackupJobException(BackupErrorReason.Unsupported, $"encrypted backup store of disk '{disk.Name}' is not supported");
        }

        var format = store.Format ?? StorageFormat.Qcow2;
        if (format is not (StorageFormat.Qcow2 or StorageFormat.Raw))
        {
            throw new BackupJobException(BackupErrorReason.Unsupported, $"backup store format '{StorageFormatNames.Of(format)}' of disk '{disk.Name}' is not supported");
        }

        var imageFormat = format == StorageFormat.Qcow2 ? ImageFormat.Qcow2 : ImageFormat.Raw;
        var incrementalTarget = mode == BackupMode.Push && source.Incremental is not null && imageFormat == ImageFormat.Qcow2;
        IBlockImage image;
        ZeroClusters zeroes;
        if (store.Type == StoreType.Block)
        {
            (image, zeroes) = await OpenBlockAsync(path, imageFormat, mode, source, incrementalTarget, options.ReuseExternal, cancellationToken).ConfigureAwait(false);
        }
        else if (options.ReuseExternal)
        {
            // QEMU opens a raw node without taking its locks until the job's transaction, which
            // compares the sizes first; a qcow2 node takes them as it opens.
            if (imageFormat == ImageFormat.Raw && File.Exists(path) && DiskSize.RoundUp(new FileInfo(path).Length) != source.Live.VirtualSize)
            {
                throw DifferentSizes();
            }

            image = await OpenAsync(path, imageFormat, cancellationToken).ConfigureAwait(false);
            zeroes = ZeroClusters.WriteZeroes;
            if (image.VirtualSize != source.Live.VirtualSize)
            {
                await image.DisposeAsync().ConfigureAwait(false);
                throw DifferentSizes();
            }
        }
        else
        {
            if (File.Exists(path) || Directory.Exists(path))
            {
                throw new BackupJobException(BackupErrorReason.StoreExists, $"store '{path}' for backup of '{disk.Name}' exists");
            }

            if (options.OnCreatingFile is { } onCreating)
            {
                await onCreating(path, cancellationToken).ConfigureAwait(false);
            }

            created(path);
            image = await CreateAsync(path, imageFormat, mode, source, incrementalTarget, cancellationToken).ConfigureAwait(false);
            zeroes = incrementalTarget ? ZeroClusters.WriteZeroes : ZeroClusters.Skip;
            if (mode == BackupMode.Push)
            {
                StreamToDisk(image);
            }
        }

        if (mode == BackupMode.Pull)
        {
            PastThePageCache(image);
        }

        var cluster = image is Qcow2Image qcow2 ? qcow2.ClusterSize : 0;
        if (image.VirtualSize < source.Live.VirtualSize)
        {
            await image.DisposeAsync().ConfigureAwait(false);
            throw new BackupJobException(BackupErrorReason.StoreCreationFailed, $"store '{path}' for backup of '{disk.Name}' is smaller than the disk ({image.VirtualSize} < {source.Live.VirtualSize} bytes)");
        }

        return new OpenStore(options.StoreWrapper?.Invoke(image) ?? image, cluster, zeroes);
    }

    /// <summary>
    /// A reused file store whose size is not the disk's: QEMU's backup job takes a target of the
    /// disk's size only (backup_job_create), a push target and a pull scratch alike, and libvirt
    /// passes its words on.
    /// </summary>
    private static BackupJobException DifferentSizes()
        => new(BackupErrorReason.StoreSizeDiffers, "unable to execute QEMU command 'transaction': Source and target image have different sizes");

    /// <summary>A pull scratch: never fsynced (<see cref="NeverFsync"/>), its copies written past the page cache.</summary>
    private static void PastThePageCache(IBlockImage image)
    {
        NeverFsync(image);

        // The guest pays for every copy its writes cause, on the same CPUs: a buffered
        // scratch write took a fresh page-cache page per 4 KiB copy. Past the page cache,
        // guest random 4 KiB writes during a pull ran at a median 60,900 IOPS against 49,200
        // buffered, in the same seven interleaved rounds (bench/engine/README.md). Reading
        // the copies back then waits for the disk, which the view's prefetch
        // (CopyBeforeWrite) spreads over a request: nbdcopy read the export, 128 MiB of it
        // scattered copies, in a median 1.03 s against 0.75 s with the copies in the page
        // cache (1.41–1.56 s without the prefetch). The guest is the production workload;
        // the reader is the backup.
        if (image is Qcow2Image scratch)
        {
            scratch.WriteGatheredDirectly();
        }
    }

    /// <summary>
    /// Opens again the store of a job a previous host handed over (<see cref="BackupJob.ResumeAsync"/>),
    /// with the settings its creation gave it: a push target streamed to the disk unless it
    /// was reused, a pull scratch never fsynced and written past the page cache.
    /// </summary>
    /// <exception cref="BackupJobException">The store cannot be opened.</exception>
    public static async ValueTask<OpenStore> ReopenAsync(BackupMode mode, BackupDisk disk, ZeroClusters zeroes, BackupJobOptions options, CancellationToken cancellationToken)
    {
        var path = disk.Store?.Path ?? throw new BackupJobException(BackupErrorReason.StoreNotOpened, $"disk '{disk.Name}' of the carried job has no store");
        var format = (disk.Store.Format ?? StorageFormat.Qcow2) == StorageFormat.Qcow2 ? ImageFormat.Qcow2 : ImageFormat.Raw;
        var image = await OpenAsync(path, format, cancellationToken).ConfigureAwait(false);
        if (mode == BackupMode.Push && !options.ReuseExternal)
        {
            StreamToDisk(image);
        }
        else if (mode == BackupMode.Pull)
        {
            PastThePageCache(image);
        }

        return new OpenStore(options.StoreWrapper?.Invoke(image) ?? image, image is Qcow2Image qcow2 ? qcow2.ClusterSize : 0, zeroes);
    }

    /// <summary>
    /// A block store (spec §6.7 step 11, §6.10): the device must exist and is formatted in place
    /// unless reuse-external is set; it is never created, so never removed, whatever the job's
    /// end (§6.9: block scratches are left as they are). A device holds whatever was written to
    /// it before, so only a freshly formatted qcow2 reads as zeroes where nothing is written; a
    /// raw device, or a reused one, gets zero clusters written as zeroes.
    /// </summary>
    private static async ValueTask<(IBlockImage Image, ZeroClusters Zeroes)> OpenBlockAsync(string path, ImageFormat format, BackupMode mode, BackupDiskSource source, bool incrementalTarget, bool reuseExternal, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            throw NotOpened(path, format, new FileNotFoundException($"Could not find file '{path}'", path));
        }

        if (!DiskImage.IsBlockDevice(path))
        {
            // QEMU's host_device driver (hdev_open), which libvirt opens a block store with.
            throw new BackupJobException(BackupErrorReason.StoreNotOpened, $"unable to execute QEMU command 'blockdev-add': 'host_device' driver requires '{path}' to be either a character or block device");
        }

        if (reuseExternal || format == ImageFormat.Raw)
        {
            var image = await OpenAsync(path, format, cancellationToken).ConfigureAwait(false);
            if (mode == BackupMode.Push && !reuseExternal)
            {
                StreamToDisk(image);
            }

            return (image, ZeroClusters.WriteZeroes);
        }

        var created = await CreateAsync(path, format, mode, source, incrementalTarget, cancellationToken).ConfigureAwait(false);
        if (mode == BackupMode.Push)
        {
            StreamToDisk(created);
        }

        return (created, incrementalTarget ? ZeroClusters.WriteZeroes : ZeroClusters.Skip);
    }

    /// <summary>
    /// A push ends with an fsync of its whole target (a completed push must survive a crash), so
    /// the target is streamed to the disk as the copy goes (<see cref="Qcow2Image.WriteBehind"/>,
    /// as the backup client's chain files are): that fsync then finds almost nothing left to
    /// write, instead of the whole backup waiting in the page cache for it. A pull scratch is
    /// not: it is never fsynced, and its copies are written past the page cache instead
    /// (<see cref="Qcow2Image.WriteGatheredDirectly"/>), which costs the guest less than
    /// streaming buffered writes would.
    /// </summary>
    private static void StreamToDisk(IBlockImage image)
    {
        switch (image)
        {
            case Qcow2Image qcow2:
                qcow2.WriteBehind = true;
                break;
            case RawImage raw:
                raw.WriteBehind = true;
                break;
        }
    }

    /// <summary>
    /// A pull scratch is private to the job and worthless once the job ends (removed, or left
    /// over after a crash to be removed at the next start): nothing in it needs to survive a
    /// crash, so neither its close nor a metadata write-back fsyncs (QEMU's cache=unsafe).
    /// </summary>
    private static void NeverFsync(IBlockImage image)
    {
        switch (image)
        {
            case Qcow2Image qcow2:
                qcow2.CacheMode = CacheMode.Unsafe;
                break;
            case RawImage raw:
                raw.CacheMode = CacheMode.Unsafe;
                break;
        }
    }

    private static async ValueTask<IBlockImage> CreateAsync(string path, ImageFormat format, BackupMode mode, BackupDiskSource source, bool incrementalTarget, CancellationToken cancellationToken)
    {
        var size = source.Live.VirtualSize;
        var overLiveDisk = incrementalTarget || mode == BackupMode.Pull;
        try
        {
            if (format == ImageFormat.Raw)
            {
                return RawImage.Create(path, size);
            }

            var options = new Qcow2CreateOptions
            {
                Size = size,
                ClusterSize = mode == BackupMode.Pull ? ScratchClusterSize(size) : (source.Live as Qcow2Image)?.ClusterSize ?? TargetClusterSize,
                BackingFile = overLiveDisk ? source.SourcePath : null,
                BackingFormat = overLiveDisk ? source.SourceFormat : null,
            };

            // The backing file is the live disk, open read-write here: naming it without
            // opening it is the only way that does not conflict with its lock.
            return overLiveDisk
                ? await Qcow2Image.CreateDetachedAsync(path, options, cancellationToken).ConfigureAwait(false)
                : await Qcow2Image.CreateAsync(path, options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException)
        {
            // libvirt reports the creation of the file as a system error (qemuBackupDiskPrepareOneStorage).
            throw HostErrno.Of(e) is null
                ? new BackupJobException(BackupErrorReason.StoreCreationFailed, $"failed to create image file '{path}': {e.Message}", e)
                : new BackupJobException(BackupErrorReason.StoreFileNotCreated, $"failed to create image file '{path}': {HostErrno.Describe(e)}", e);
        }
    }

    private static async ValueTask<IBlockImage> OpenAsync(string path, ImageFormat format, CancellationToken cancellationToken)
    {
        try
        {
            // A reused qcow2 store may name the live disk as its backing file (what libvirt
            // itself writes into incremental targets and scratches): see the remarks above.
            return format == ImageFormat.Qcow2
                ? await Qcow2Image.OpenDetachedAsync(path, readOnly: false, cancellationToken).ConfigureAwait(false)
                : await DiskImage.OpenAsync(path, format, readOnly: false, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException)
        {
            throw NotOpened(path, format, e);
        }
    }

    /// <summary>
    /// A reused store that cannot be opened. libvirt opens it through QEMU's <c>blockdev-add</c>
    /// (qemuBackupDiskPrepareOneStorage with reuse-external) and passes QEMU's words on: a file
    /// that cannot be opened is file-posix's "Could not open '%s'" with strerror
    /// (raw_open_common), a file without qcow2's magic "Image is not in qcow2 format"
    /// (qcow2_do_open), one another process holds QEMU's lock conflict ("Failed to get "write"
    /// lock"). Anything else is Tidemark's own reading of the image.
    /// </summary>
    private static BackupJobException NotOpened(string path, ImageFormat format, Exception e)
    {
        const string BlockdevAdd = "unable to execute QEMU command 'blockdev-add'";
        if (HostErrno.Of(e) is not null)
        {
            return new BackupJobException(BackupErrorReason.StoreNotOpened, $"{BlockdevAdd}: Could not open '{path}': {HostErrno.Describe(e)}", e);
        }

        return e switch
        {
            StorageException { Reason: StorageErrorReason.NotAnImage } when format == ImageFormat.Qcow2 => new BackupJobException(BackupErrorReason.StoreNotOpened, $"{BlockdevAdd}: Image is not in qcow2 format", e),

            // Another process's image (a running VM's disk): QEMU's lock conflict, met as a qcow2
            // node opens, and by a raw node only when the job's transaction puts it to use.
            StorageException { Reason: StorageErrorReason.Locked } when format == ImageFormat.Raw => new BackupJobException(BackupErrorReason.StoreNotOpened, $"unable to execute QEMU command 'transaction': Could not create node: {LockConflict.QemuWords(e.Message, e.Message)}", e),
            StorageException { Reason: StorageErrorReason.Locked } => new BackupJobException(BackupErrorReason.StoreNotOpened, $"{BlockdevAdd}: {LockConflict.QemuWords(e.Message, e.Message)}", e),
            _ => new BackupJobException(BackupErrorReason.StoreCreationFailed, $"cannot open backup store '{path}': {e.Message}", e),
        };
    }
}
