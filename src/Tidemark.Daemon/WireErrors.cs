using Tidemark.Engine;
using Tidemark.Engine.Backups;
using Tidemark.Formats;
using Tidemark.Remote;
using Tidemark.Storage;

namespace Tidemark.Daemon;

/// <summary>
/// The errors of the layers below as a client sees them (libvirt-rpc.md §6): each layer's
/// exception carries libvirt's code and full message already, so only the error domain is
/// chosen here, as libvirt's QEMU driver reports each error: DOMAIN (20, "Domain Config") for a
/// name already taken by a domain or checkpoint (libvirt's object lists in src/conf say so),
/// NONE (0) for a job wait that timed out (libvirt's job code in src/conf reports it so),
/// QEMU (10) for the rest, checkpoint lookups included (the driver's own
/// qemu_checkpoint.c reports them; libvirt 9.0 answers a missing checkpoint with domain 10).
/// </summary>
internal static class WireErrors
{
    /// <summary>The libvirt error for <paramref name="error"/>, or null when it is not an error of the layers below (cancellation, bugs).</summary>
    public static LibvirtError? From(Exception error) => error switch
    {
        LibvirtError libvirt => libvirt,
        EngineException e => new LibvirtError((VirErrorNumber)(int)e.Code, DomainOf(e.Reason), e.Message),
        DocumentException e => Create(e.Code, e.Message),
        BackupJobException e => Create(e.Code, e.Message),
        StorageException or IOException or UnauthorizedAccessException => LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.Qemu, error.Message),
        _ => null,
    };

    // The two enums number the codes as the wire does (libvirt's virErrorNumber).
    private static LibvirtError Create(LibvirtErrorCode code, string message) =>
        new((VirErrorNumber)(int)code, VirErrorDomain.Qemu, message);

    private static VirErrorDomain DomainOf(EngineErrorReason reason) => reason switch
    {
        EngineErrorReason.DomainExists or EngineErrorReason.CheckpointExists => VirErrorDomain.Domain,

        // src/conf: the domain list refuses a taken name (virdomainobjlist.c), the parser a '/' (domain_conf.c).
        EngineErrorReason.DomainNameTaken or EngineErrorReason.InvalidDomainName => VirErrorDomain.Domain,

        // src/conf/virdomainjob.c, which waits for the domain's job, reports as VIR_FROM_NONE.
        EngineErrorReason.JobWaitTimeout => VirErrorDomain.None,
        _ => VirErrorDomain.Qemu,
    };
}
