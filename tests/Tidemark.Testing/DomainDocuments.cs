using System.Security;

namespace Tidemark.Testing;

/// <summary>Domain documents the tests define on Tidemark's daemon.</summary>
public static class DomainDocuments
{
    /// <summary>
    /// A KVM domain with one qcow2 virtio disk per (target, image), as virsh define takes it;
    /// with <paramref name="blockDevices"/>, each image is a block device (<c>&lt;disk type='block'&gt;</c>).
    /// </summary>
    public static string WithQcow2Disks(string name, IEnumerable<(string Target, string Image)> disks, bool blockDevices = false)
    {
        var (type, attribute) = blockDevices ? ("block", "dev") : ("file", "file");
        var devices = string.Concat(disks.Select(d => $"""
                <disk type='{type}' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source {attribute}='{SecurityElement.Escape(d.Image)}'/>
                  <target dev='{d.Target}' bus='virtio'/>
                </disk>

            """));
        return $"""
            <domain type='kvm'>
              <name>{name}</name>
              <memory unit='KiB'>1048576</memory>
              <vcpu placement='static'>2</vcpu>
              <os>
                <type arch='x86_64'>hvm</type>
              </os>
              <devices>
            {devices}  </devices>
            </domain>
            """;
    }
}
