namespace Tidemark.Engine.Domains;

/// <summary>
/// How <see cref="Domain.StartAsync(DomainStartFlags, CancellationToken)"/> starts a domain: paused
/// or not (libvirt's flag), and where the guest's disks are served (Tidemark's own: libvirt's
/// domain XML has no element for it, since with QEMU the guest is inside the process).
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

    /// <summary>
    /// Start paused (libvirt's <c>VIR_DOMAIN_START_PAUSED</c>): the guest's connections are
    /// accepted, but every request waits at the <see cref="Disks.GuestGate"/> until
    /// <see cref="Domain.ResumeAsync"/>, as QEMU started with <c>-S</c> runs no vCPU until libvirt
    /// sends <c>cont</c> (qemuProcessStart skips qemuProcessStartCPUs when asked to start paused).
    /// </summary>
    Paused = 2,
}
