using Tidemark.Engine;
using Tidemark.Engine.Backups;
using Tidemark.Formats;
using Tidemark.Remote;
using Tidemark.Storage;

namespace Tidemark.Daemon;

/// <summary>
/// The errors of the layers below as a client sees them (libvirt-rpc.md §6): each layer's
/// exception carries libvirt's code and full message already, so only the error domain is
/// chosen here: DOMAIN_CHECKPOINT (69) for checkpoint errors, as libvirt's checkpoint lookups
/// report them, QEMU (10) for the rest, as the qemu driver reports them.
/// </summary>
internal static class WireErrors
{
    /// <summary>The libvirt error for <paramref name="error"/>, or null when it is not an error of the layers below (cancellation, bugs).</summary>
    public static LibvirtError? From(Exception error) => error switch
    {
        LibvirtError libvirt => libvirt,
        EngineException e => Create(e.Code, e.Message),
        DocumentException e => Create(e.Code, e.Message),
        BackupJobException e => Create(e.Code, e.Message),
        StorageException or IOException or UnauthorizedAccessException => LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Qemu, error.Message),
        _ => null,
    };

    private static LibvirtError Create(LibvirtErrorCode code, string message)
    {
        // The two enums number the codes as the wire does (libvirt's virErrorNumber).
        var number = (VirErrorNumber)(int)code;
        var domain = number is VirErrorNumber.NoDomainCheckpoint or VirErrorNumber.CheckpointInconsistent
            ? VirErrorDomain.DomainCheckpoint
            : VirErrorDomain.Qemu;
        return new LibvirtError(number, domain, message);
    }
}
