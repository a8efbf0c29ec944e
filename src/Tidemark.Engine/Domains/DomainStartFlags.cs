namespace Tidemark.Engine.Domains;

/// <summary>
/// How <see cref="Domain.StartAsync(DomainStartFlags, CancellationToken)"/> serves the guest's
/// disks. Tidemark's own flags: libvirt's domain XML has no element for where a disk is served,
/// since with QEMU the guest is inside the process.
/// </summary>
[Flags]
public enum DomainStartFlags : uint
{
    /// <summary>The domain's unix socket only.</summary>
    None = 0,

    /// <summary>
    /// Also a TCP listener on 127.0.0.1, on a port the kernel picks
    /// (<see cref="Disks.RunningDomain.TcpEndPoint"/>): <c>nbd://127.0.0.1:PORT/vda</c>, for
    /// guests that cannot reach the unix socket. Loopback only: the exports are read-write and
    /// unauthenticated, as the unix socket is (whose directory permissions guard it).
    /// </summary>
    GuestTcp = 1,
}
