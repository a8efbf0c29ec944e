using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// The domain most comparisons start from: two empty 16 MiB qcow2 disks, vda and vdb, in
/// <c>DIRECTORY/NAME/</c>, and its domain XML beside them, the same for libvirtd and Tidemark.
/// </summary>
internal static class TwoDiskDomain
{
    /// <summary>Creates the images and the XML; returns the XML's path.</summary>
    public static async Task<string> CreateAsync(string directory, string name)
    {
        var images = Path.Combine(directory, name);
        Directory.CreateDirectory(images);
        var disks = new List<LibvirtdDisk>();
        foreach (var target in new[] { "vda", "vdb" })
        {
            var image = Path.Combine(images, target + ".qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
            disks.Add(new LibvirtdDisk(target, image));
        }

        var xml = Path.Combine(images, name + ".xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain(name, disks).Xml(), TestContext.Current.CancellationToken);
        return xml;
    }
}
