using System.Security;

namespace Tidemark.Testing;

/// <summary>
/// A domain <see cref="PrivateLibvirtd.DefineDomainAsync"/> defined: TCG (<c>type='qemu'</c>,
/// no KVM needed), 64 MiB, one vCPU, no OS and no graphics, one virtio disk per entry.
/// </summary>
/// <param name="Hotplug">
/// ACPI on: the <c>pc</c> machine's pci.0 takes hot-plugged devices only through ACPI PCI
/// hotplug (without it QEMU refuses <c>device_add</c>, "Bus 'pci.0' does not support
/// hotplugging"), so <c>virsh attach-disk --live</c> works.
/// </param>
public sealed record LibvirtdDomain(string Name, IReadOnlyList<LibvirtdDisk> Disks, bool Hotplug = false)
{
    /// <summary>The disk on <paramref name="target"/>.</summary>
    public LibvirtdDisk Disk(string target) => Disks.Single(d => d.Target == target);

    /// <summary>The domain document, each disk named by a user alias so its QOM path is known.</summary>
    public string Xml()
    {
        var devices = string.Concat(Disks.Select(d => $"""
                <disk type='file' device='disk'>
                  <driver name='qemu' type='{d.Format}'/>
                  <source file='{SecurityElement.Escape(d.Image)}'/>
                  <target dev='{d.Target}' bus='virtio'/>
            {(d.ReadOnly ? "      <readonly/>\n" : "")}      <alias name='{d.Alias}'/>
                </disk>

            """));
        return $"""
            <domain type='qemu'>
              <name>{SecurityElement.Escape(Name)}</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os>
                <type arch='x86_64' machine='pc'>hvm</type>
              </os>
            {(Hotplug ? "  <features>\n    <acpi/>\n  </features>\n" : "")}  <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
            {(Hotplug ? "    <controller type='pci' index='0' model='pci-root'/>\n" : "")}{devices}  </devices>
            </domain>
            """;
    }
}

/// <summary>One virtio disk of a <see cref="LibvirtdDomain"/>: qcow2 unless <paramref name="Format"/> says otherwise, read-only when asked.</summary>
public sealed record LibvirtdDisk(string Target, string Image, string Format = "qcow2", bool ReadOnly = false)
{
    /// <summary>
    /// The device alias: libvirt passes a <c>ua-</c> alias to QEMU as the device id, so the
    /// disk's QOM path does not depend on the order libvirt numbers disks in.
    /// </summary>
    public string Alias => "ua-" + Target;

    /// <summary>The QOM path of the disk's block backend, which HMP <c>qemu-io -d</c> takes.</summary>
    public string BackendPath => BackendPathOf(Target);

    internal static string BackendPathOf(string target) => $"/machine/peripheral/ua-{target}/virtio-backend";
}
