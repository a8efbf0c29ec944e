namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// The smallest domain both hosts run: TCG, 64 MiB, no OS, the devices given; and its file
/// disks, each with the user alias <c>ua-DEV</c> that the real libvirtd's guest writes address
/// (<see cref="Testing.PrivateLibvirtd.GuestWriteAsync"/>).
/// </summary>
internal static class BareDomain
{
    /// <param name="acpi">With ACPI, so that disks can be hot-plugged on the real libvirtd.</param>
    public static string Xml(string name, string devices, bool acpi = false) => $"""
        <domain type='qemu'>
          <name>{name}</name>
          <memory unit='MiB'>64</memory>
          <os><type arch='x86_64'>hvm</type></os>{(acpi ? "\n  <features><acpi/></features>" : "")}
          <devices>{devices}</devices>
        </domain>
        """;

    /// <param name="extra">Elements after the target (<c>&lt;readonly/&gt;</c>, <c>&lt;shareable/&gt;</c>, <c>&lt;transient/&gt;</c>).</param>
    /// <param name="cache">The driver's cache mode, if any.</param>
    public static string FileDisk(string path, string dev, string format, string extra = "", string? cache = null)
        => $"<disk type='file' device='disk'><driver name='qemu' type='{format}'{(cache is null ? "" : $" cache='{cache}'")}/><source file='{path}'/><target dev='{dev}' bus='virtio'/>{extra}<alias name='ua-{dev}'/></disk>";
}
