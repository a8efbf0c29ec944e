using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// The disks of a domain's <c>virsh dumpxml</c>, for comparing two hosts: the root element (its
/// id masked) and each <c>&lt;disk&gt;</c> element without the guest address libvirtd gives it
/// (Tidemark runs no guest machine).
/// </summary>
internal static partial class LiveDisks
{
    public static async Task<string> DumpAsync(string uri, string domain)
    {
        var xml = await Peer.RunCheckedAsync("virsh", "-c", uri, "dumpxml", domain);
        var root = IdAttribute().Replace(xml[..xml.IndexOf('\n', StringComparison.Ordinal)], "id='ID'");
        var disks = DiskElement().Matches(xml).Select(m => AddressLine().Replace(m.Value, ""));
        return root + "\n" + string.Concat(disks.Select(d => d + "\n"));
    }

    [GeneratedRegex(@"id='[0-9]+'")]
    private static partial Regex IdAttribute();

    [GeneratedRegex(@"(?s) *<disk .*?</disk>")]
    private static partial Regex DiskElement();

    [GeneratedRegex(@"(?m)^ *<address [^\n]*\n")]
    private static partial Regex AddressLine();
}
