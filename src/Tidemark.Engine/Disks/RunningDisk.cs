using Tidemark.Formats.Domains;
using Tidemark.Nbd;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Disks;

/// <summary>
/// One disk of a running domain: its definition, the live image (top of the backing chain, open
/// read-write with QEMU's locks unless the disk is read-only) and the <see cref="GuestDisk"/>
/// the guest reaches it through. What a backup job needs of a disk: the live image and its
/// allocation for a full backup, the merged dirty set of a checkpoint for an incremental one.
/// </summary>
public sealed class RunningDisk
{
    private int _ioStatus;

    /// <param name="ioFailures">Where a guest request whose image I/O failed is taken (the domain applies <see cref="ErrorPolicy"/>); null: such requests fail.</param>
    internal RunningDisk(DomainDisk definition, IBlockImage image, ImageFormat format, InstantBarrier barrier, GuestGate gate, IGuestIoFailures? ioFailures)
    {
        Definition = definition;
        LiveImage = image;
        Format = format;
        ErrorPolicy = DiskErrorPolicy.Of(definition);
        Guest = new GuestDisk(image, barrier, gate, ioFailures is null ? null : (write, failure, token) => ioFailures.OnGuestIoFailureAsync(this, write, failure, token), definition.CopyOnRead);
    }

    /// <summary>What a guest request whose image I/O failed comes to (the disk's error_policy and rerror_policy).</summary>
    public DiskErrorPolicy ErrorPolicy { get; }

    /// <summary>
    /// QEMU's io-status of the disk's device: the first failure that paused the domain (a stop
    /// action), kept until the domain stops, as QEMU 7.2 keeps it across a resume; what
    /// virDomainGetDiskErrors reports. A reported or ignored failure leaves it as it is.
    /// </summary>
    public DiskIoStatus IoStatus
    {
        get => (DiskIoStatus)Volatile.Read(ref _ioStatus);
        internal set => Interlocked.CompareExchange(ref _ioStatus, (int)value, (int)DiskIoStatus.Ok);
    }

    /// <summary>The disk's target dev (<c>vda</c>): its name in checkpoints, backups and NBD exports.</summary>
    public string Target => Definition.TargetDev;

    /// <summary>The disk as the domain defines it.</summary>
    public DomainDisk Definition { get; }

    /// <summary>The format of the top image.</summary>
    public ImageFormat Format { get; }

    /// <summary>
    /// The top image of the disk's chain. Reads and <see cref="IBlockImage.GetExtentsAsync"/>
    /// of it give the disk's current content and allocation; guest writes must go through
    /// <see cref="Guest"/>, never straight here.
    /// </summary>
    public IBlockImage LiveImage { get; }

    /// <summary>The guest-facing image: gate, barrier, interceptor, then the live image.</summary>
    public GuestDisk Guest { get; }

    /// <summary>
    /// The guest's requests on the disk since the domain started (or since a host took it over),
    /// counted by its NBD export as QEMU counts a device's: what virDomainBlockStats reports.
    /// </summary>
    public NbdExportStatistics Statistics { get; } = new();

    /// <summary>
    /// The incremental dirty set since checkpoint <paramref name="checkpoint"/>: its bitmap merged
    /// across the disk's backing chain (spec §6.8), as a fresh copy that later guest writes do not
    /// change. Taken while <paramref name="closure"/> holds the domain's barrier closed, so the copy
    /// and whatever else is done under the same closure belong to one instant.
    /// </summary>
    /// <exception cref="EngineException"><see cref="EngineErrorReason.BrokenBitmap"/>: "missing or broken
    /// bitmap '%s' for disk '%s'" when the chain is not valid (spec §6.6).</exception>
    /// <exception cref="InvalidOperationException">The closure does not hold this disk's barrier.</exception>
    public DirtyBitmap GetIncrementalBitmap(string checkpoint, BarrierClosure closure)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(closure);
        if (closure.Barrier is null || !closure.Barrier.IsClosed)
        {
            throw new InvalidOperationException("an incremental dirty set is taken only while the domain's barrier is held closed");
        }

        return BitmapChain.Merge(LiveImage, checkpoint) ?? throw BrokenBitmap(checkpoint, Target);
    }

    /// <summary>True when bitmap <paramref name="name"/> forms a valid chain on this disk (spec §6.6).</summary>
    public bool HasValidBitmap(string name) => BitmapChain.ValidRun(LiveImage, name) is not null;

    /// <summary>Every layer of the image as opened, the top first: each one's file (null for one without) and format.</summary>
    public IReadOnlyList<(string? Path, Storage.ImageFormat Format)> Layers()
        => [.. from layer in BitmapChain.Layers(LiveImage)
               select (Storage.DiskImage.PathOf(layer), layer is Storage.Qcow2.Qcow2Image ? Storage.ImageFormat.Qcow2 : Storage.ImageFormat.Raw)];

    /// <summary>The images under the top one, from the top down: each one's file and virtual size.</summary>
    public IReadOnlyList<(string Path, long VirtualSize)> BackingLayers()
        => [.. from layer in BitmapChain.Layers(LiveImage).Skip(1)
               let path = Storage.DiskImage.PathOf(layer)
               where path is not null
               select (path, layer.VirtualSize)];

    /// <summary>Bytes dirty in bitmap <paramref name="name"/> across the chain, or null when the chain is not valid (spec §6.5).</summary>
    internal long? DirtyBytes(string name) => BitmapChain.Merge(LiveImage, name)?.CountDirtyBytes();

    internal static EngineException BrokenBitmap(string bitmap, string disk)
        => new(EngineErrorReason.BrokenBitmap, $"missing or broken bitmap '{bitmap}' for disk '{disk}'");
}

/// <summary>A device's io-status as QEMU's query-block reports it (virDomainDiskErrorCode).</summary>
public enum DiskIoStatus
{
    /// <summary>No failure paused the domain.</summary>
    Ok,

    /// <summary>"failed": an I/O failure other than the host running out of space.</summary>
    Failed,

    /// <summary>"nospace": the host ran out of space (ENOSPC).</summary>
    NoSpace,
}

/// <summary>Takes a running domain's guest requests whose image I/O failed: applies the disk's error policy.</summary>
internal interface IGuestIoFailures
{
    /// <summary>As <see cref="GuestIoFailureHandler"/>, for <paramref name="disk"/>.</summary>
    ValueTask<bool> OnGuestIoFailureAsync(RunningDisk disk, bool write, Exception failure, CancellationToken cancellationToken);
}
