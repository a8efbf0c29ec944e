using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Tests.Support;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Listing through the engine API (spec §4.3, libvirt's <c>virDomainMomentObjListGetNames</c>)
/// on a branched tree whose names sort differently by topology than by name, as libvirt's
/// <c>tests/virshtestdata/checkpoint.in</c> chooses them:
/// <code>
/// z1 ─┬─ m2 ─┬─ c3
///     │      └─ y4 ── b5
///     └─ a6
/// r7 ── d8
/// </code>
/// </summary>
public sealed class CheckpointListingTests
{
    private const long Size = 4 << 20;

    private static readonly (string Name, string? Parent)[] Tree =
    [
        ("z1", null), ("m2", "z1"), ("c3", "m2"), ("y4", "m2"), ("b5", "y4"), ("a6", "z1"), ("r7", null), ("d8", "r7"),
    ];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DomainListing_FiltersAndOrder()
    {
        await using var test = await TestHost.CreateAsync();
        var checkpoints = await DefineTreeAsync(test);

        await AssertSetAsync(["z1", "m2", "c3", "y4", "b5", "a6", "r7", "d8"], CheckpointListFlags.None);
        await AssertSetAsync(["z1", "r7"], CheckpointListFlags.Roots);
        await AssertSetAsync(["c3", "b5", "a6", "d8"], CheckpointListFlags.Leaves);
        await AssertSetAsync(["z1", "m2", "y4", "r7"], CheckpointListFlags.NoLeaves);
        await AssertSetAsync(["z1", "r7"], CheckpointListFlags.Roots | CheckpointListFlags.NoLeaves);
        await AssertSetAsync([], CheckpointListFlags.Roots | CheckpointListFlags.Leaves);

        // Both leaf filters: each drops what the other keeps. An empty list, not an error.
        await AssertSetAsync([], CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves);
        await AssertSetAsync([], CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves | CheckpointListFlags.Topological);
        await AssertSetAsync([], CheckpointListFlags.Roots | CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves);

        // TOPOLOGICAL: a pre-order walk, so every parent before its children, with or without filters.
        AssertPreOrder(await checkpoints.ListAsync(CheckpointListFlags.Topological, Ct), null);
        AssertParentsFirst(await checkpoints.ListAsync(CheckpointListFlags.Topological | CheckpointListFlags.NoLeaves, Ct), ["z1", "m2", "y4", "r7"]);
        await AssertSetAsync(["z1", "r7"], CheckpointListFlags.Topological | CheckpointListFlags.Roots);

        async Task AssertSetAsync(string[] expected, CheckpointListFlags flags)
            => Assert.Equal(expected.Order(StringComparer.Ordinal), (await checkpoints.ListAsync(flags, Ct)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task ChildListing_FiltersAndOrder()
    {
        await using var test = await TestHost.CreateAsync();
        var checkpoints = await DefineTreeAsync(test);

        await AssertSetAsync(["m2", "a6"], "z1", CheckpointListFlags.None);
        await AssertSetAsync(["a6"], "z1", CheckpointListFlags.Leaves);
        await AssertSetAsync(["m2"], "z1", CheckpointListFlags.NoLeaves);
        await AssertSetAsync(["m2", "a6"], "z1", CheckpointListFlags.Topological);
        await AssertSetAsync([], "z1", CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves);

        // DESCENDANTS: the whole subtree, never the checkpoint itself.
        await AssertSetAsync(["m2", "c3", "y4", "b5", "a6"], "z1", CheckpointListFlags.Descendants);
        await AssertSetAsync(["c3", "b5", "a6"], "z1", CheckpointListFlags.Descendants | CheckpointListFlags.Leaves);
        await AssertSetAsync(["m2", "y4"], "z1", CheckpointListFlags.Descendants | CheckpointListFlags.NoLeaves);
        await AssertSetAsync([], "z1", CheckpointListFlags.Descendants | CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves);
        await AssertSetAsync(["y4"], "m2", CheckpointListFlags.Descendants | CheckpointListFlags.NoLeaves | CheckpointListFlags.Topological);
        await AssertSetAsync(["d8"], "r7", CheckpointListFlags.Descendants | CheckpointListFlags.Leaves);
        AssertPreOrder(await checkpoints.ListChildrenAsync("z1", CheckpointListFlags.Descendants | CheckpointListFlags.Topological, Ct), "z1");
        AssertParentsFirst(await checkpoints.ListChildrenAsync("z1", CheckpointListFlags.Descendants | CheckpointListFlags.Topological | CheckpointListFlags.NoLeaves, Ct), ["m2", "y4"]);

        // A leaf has no children, whatever the filter.
        await AssertSetAsync([], "b5", CheckpointListFlags.None);
        await AssertSetAsync([], "b5", CheckpointListFlags.Descendants | CheckpointListFlags.Leaves);
        await AssertSetAsync([], "b5", CheckpointListFlags.NoLeaves);

        async Task AssertSetAsync(string[] expected, string from, CheckpointListFlags flags)
            => Assert.Equal(expected.Order(StringComparer.Ordinal), (await checkpoints.ListChildrenAsync(from, flags, Ct)).Order(StringComparer.Ordinal));
    }

    // Redefined parents first (a redefinition needs its parent); metadata only, so no image is touched.
    private static async Task<DomainCheckpoints> DefineTreeAsync(TestHost test)
    {
        var domain = await test.DefineAsync("l", Size, new TestDisk("vda"));
        var time = 100;
        foreach (var (name, parent) in Tree)
        {
            var parentElement = parent is null ? "" : $"<parent><name>{parent}</name></parent>";
            await domain.Checkpoints.CreateAsync(
                $"<domaincheckpoint><name>{name}</name>{parentElement}<creationTime>{time++}</creationTime><disks><disk name='vda' checkpoint='no'/></disks></domaincheckpoint>",
                CheckpointCreateFlags.Redefine,
                Ct);
        }

        Assert.Equal(Tree.Length, domain.Checkpoints.Count);
        return domain.Checkpoints;
    }

    // Every checkpoint below `from` (all for null) exactly once, each parent before its
    // children, and each subtree in one run: a depth-first pre-order walk (spec §4.3).
    private static void AssertPreOrder(IReadOnlyList<string> listed, string? from)
    {
        var expected = Tree.Where(c => from is null || IsBelow(c.Name, from)).Select(c => c.Name).Order(StringComparer.Ordinal);
        Assert.Equal(expected, listed.Order(StringComparer.Ordinal));
        AssertParentsFirst(listed, [.. listed]);
        foreach (var name in listed)
        {
            var subtree = listed.Where(n => n == name || IsBelow(n, name)).ToList();
            var start = listed.ToList().IndexOf(name);
            Assert.Equal(subtree, listed.Skip(start).Take(subtree.Count));
        }
    }

    private static void AssertParentsFirst(IReadOnlyList<string> listed, string[] expectedSet)
    {
        Assert.Equal(expectedSet.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        var position = listed.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i);
        foreach (var (name, parent) in Tree)
        {
            if (parent is not null && position.TryGetValue(name, out var child) && position.TryGetValue(parent, out var above))
            {
                Assert.True(above < child, $"{parent} listed after its child {name}: {string.Join(" ", listed)}");
            }
        }
    }

    private static bool IsBelow(string name, string ancestor)
    {
        for (var parent = ParentOf(name); parent is not null; parent = ParentOf(parent))
        {
            if (parent == ancestor)
            {
                return true;
            }
        }

        return false;
    }

    private static string? ParentOf(string name) => Tree.Single(c => c.Name == name).Parent;
}
