namespace Tidemark.Daemon;

/// <summary>
/// The bits of <c>virDomainCreateWithFlags</c> and <c>virDomainCreateXML</c> this daemon acts on:
/// libvirt's <c>VIR_DOMAIN_START_PAUSED</c>, and Tidemark's own <see cref="GuestTcp"/>. The rest
/// of libvirt's <c>virDomainCreateFlags</c> (AUTODESTROY 0x2 … RESET_NVRAM 0x20) has nothing to
/// act on with a guest that is an NBD client.
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
    /// <summary><c>VIR_DOMAIN_START_PAUSED</c>: the domain starts paused, its guest requests held until the resume.</summary>
    public const uint Paused = 1;

    /// <summary>Also serve the domain's disks on 127.0.0.1: <c>nbd://127.0.0.1:PORT/vda</c>.</summary>
    public const uint GuestTcp = 1u << 30;
}
