using Tidemark.Engine.Domains;

namespace Tidemark.Engine.Tests;

/// <summary>
/// libvirt's node numbers, as libvirtd 9.0 gave them to a domain of five disks (vda a
/// three-layer chain, vdb raw, hdc a CD-ROM with media, hdd one without, sda) and to what
/// happened to it afterwards (LiveXmlDifferentialTests and MediaDifferentialTests compare the
/// same through virsh).
/// </summary>
public sealed class NodeNumberingTests
{
    [Fact]
    public void Start_NumbersTheDisksFromTheLast_EachChainFromItsTop()
    {
        var nodes = new NodeNumbering();
        nodes.Start([("vda", 3), ("vdb", 1), ("hdc", 1), ("hdd", 0), ("sda", 1)]);
        Assert.Equal([1u], nodes.Disks["sda"]);
        Assert.False(nodes.Disks.ContainsKey("hdd"));
        Assert.Equal([3u], nodes.Disks["hdc"]);
        Assert.Equal([4u], nodes.Disks["vdb"]);
        Assert.Equal([5u, 6u, 7u], nodes.Disks["vda"]);
        Assert.Equal(7u, nodes.Last);
    }

    [Fact]
    public void LaterChanges_TakeWhatLibvirtdTakes()
    {
        var nodes = new NodeNumbering();
        nodes.Start([("vda", 3), ("vdb", 1), ("hdc", 1), ("hdd", 0), ("sda", 1)]);

        // A two-layer chain hot-plugged: 8 for its detected backing layer, then 9 and 10.
        nodes.Add("vdc", 2);
        Assert.Equal([9u, 10u], nodes.Disks["vdc"]);
        nodes.Eject("hdc");
        Assert.Equal([11u], nodes.Disks["hdc"]);
        nodes.Add("hdd", 1);
        Assert.Equal([12u], nodes.Disks["hdd"]);
        nodes.Skip();
        Assert.Equal(14u, nodes.Next());
        nodes.Remove("vdc");
        Assert.False(nodes.Disks.ContainsKey("vdc"));

        // A new start forgets all of it.
        nodes.Start([("vda", 1)]);
        Assert.Equal(1u, nodes.Last);
        Assert.Single(nodes.Disks);
    }

    [Fact]
    public void Continue_NeverGoesBack_AndTakesTheRecordedDisks()
    {
        var nodes = new NodeNumbering();
        nodes.Start([("vda", 1), ("vdb", 1)]);
        nodes.Continue(9, new Dictionary<string, System.Collections.Immutable.ImmutableArray<uint>> { ["vda"] = [2], ["vdb"] = [7] });
        Assert.Equal(9u, nodes.Last);
        Assert.Equal([7u], nodes.Disks["vdb"]);
        nodes.Continue(3);
        Assert.Equal(9u, nodes.Last);
        Assert.Equal([7u], nodes.Disks["vdb"]);
    }
}
