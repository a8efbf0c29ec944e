using Tidemark.Formats.Domains;
using Tidemark.Storage;

namespace Tidemark.Engine.Disks;

/// <summary>What a guest request whose image I/O failed comes to: one of QEMU's block error actions.</summary>
public enum DiskErrorAction
{
    /// <summary>The request fails: the guest sees the error (QEMU's <c>report</c>).</summary>
    Report,

    /// <summary>The request is answered as done and the failure dropped (QEMU's <c>ignore</c>).</summary>
    Ignore,

    /// <summary>The domain pauses with the request held; a resume tries it again (QEMU's <c>stop</c>).</summary>
    Stop,
}

/// <summary>
/// A disk's error policies, as libvirt's <c>&lt;driver error_policy= rerror_policy=&gt;</c> hand
/// them to QEMU's device as <c>werror</c> and <c>rerror</c>
/// (qemuBuildDiskFrontendAttributeErrorPolicy): an error_policy other than <c>enospace</c> stands
/// for reads too when rerror_policy is absent, and what neither names is QEMU's default,
/// <c>werror=enospc</c> (pause when the host is out of space, report any other failure) and
/// <c>rerror=report</c>. Flushes, write-zeroes and discards count as writes, as virtio-blk
/// counts them.
/// </summary>
/// <param name="Write">stop, report, ignore or enospace.</param>
/// <param name="Read">stop, report, ignore or enospace.</param>
public sealed record DiskErrorPolicy(string Write, string Read)
{
    private const string NoSpaceOnly = "enospace";

    /// <summary>QEMU's defaults: werror=enospc, rerror=report.</summary>
    public static DiskErrorPolicy Default { get; } = new(NoSpaceOnly, "report");

    /// <summary>The policies a disk's <c>&lt;driver&gt;</c> names (its values checked by the schema).</summary>
    public static DiskErrorPolicy Of(DomainDisk disk)
    {
        ArgumentNullException.ThrowIfNull(disk);
        var write = disk.ErrorPolicy;
        var read = disk.ReadErrorPolicy ?? (write is null or NoSpaceOnly ? null : write);
        return new DiskErrorPolicy(write ?? Default.Write, read ?? Default.Read);
    }

    /// <summary>The action for a failed write (<paramref name="write"/>) or read, out of space or not.</summary>
    public DiskErrorAction ActionFor(bool write, bool noSpace) => (write ? Write : Read) switch
    {
        "stop" => DiskErrorAction.Stop,
        "ignore" => DiskErrorAction.Ignore,
        NoSpaceOnly when noSpace => DiskErrorAction.Stop,
        _ => DiskErrorAction.Report,
    };

    /// <summary>
    /// Whether <paramref name="failure"/> is the image's I/O failing (what QEMU's error actions
    /// apply to), not a request the device refuses (read-only, out of range) or a cancellation.
    /// </summary>
    public static bool IsIoFailure(Exception failure)
        => failure is not OperationCanceledException && IoErrorOf(failure) is not null;

    /// <summary>Whether the host ran out of space (<see cref="HostErrno.IsNoSpace"/>), whatever wrapped the failure.</summary>
    public static bool IsNoSpace(Exception failure) => IoErrorOf(failure) is { } io && HostErrno.IsNoSpace(io);

    // The I/O failure inside whatever wrapped it on the way up (a copy-before-write failing the
    // guest write wraps the scratch's error); a storage error that is not I/O ends the search.
    private static IOException? IoErrorOf(Exception failure)
    {
        for (Exception? e = failure; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case IOException io:
                    return io;
                case StorageException { Reason: StorageErrorReason.ReadOnly or StorageErrorReason.Locked or StorageErrorReason.InvalidRequest }:
                    return null;
            }
        }

        return null;
    }
}
