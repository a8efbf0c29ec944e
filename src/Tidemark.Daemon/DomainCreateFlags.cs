namespace Tidemark.Daemon;

/// <summary>
/// Tidemark's own bit of <c>virDomainCreateWithFlags</c> and <c>virDomainCreateXML</c>, beside libvirt's
/// <c>virDomainCreateFlags</c> (PAUSED 0x1 … RESET_NVRAM 0x20, none of which applies to a guest
/// that is an NBD client).
/// </summary>
/// <remarks>
/// libvirt's domain XML has no element for where a disk is served (with QEMU the guest is inside
/// the process), so asking for a TCP listener is a start flag, as the engine's
/// <see cref="Engine.Domains.DomainStartFlags.GuestTcp"/> is. The bit sits far above libvirt's
/// so that a future libvirt flag does not collide with it; libvirtd refuses it as it refuses
/// every unknown bit ("unsupported flags (0x40000000) in function qemuDomainCreateWithFlags"),
/// and so does this daemon for every other unknown bit.
/// </remarks>
public static class DomainCreateFlags
{
    /// <summary>Also serve the domain's disks on 127.0.0.1: <c>nbd://127.0.0.1:PORT/vda</c>.</summary>
    public const uint GuestTcp = 1u << 30;
}
