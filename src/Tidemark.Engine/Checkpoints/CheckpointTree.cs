using Tidemark.Formats.Checkpoints;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// A domain's checkpoints as a tree (spec §1, libvirt <c>virdomainmomentobjlist.c</c>): parent
/// links by name, the roots as children of a hidden meta-root, and the current checkpoint.
/// Not thread-safe: the domain's lock guards it.
/// </summary>
internal sealed class CheckpointTree
{
    private readonly Dictionary<string, Checkpoint> _byName = new(StringComparer.Ordinal);

    // The meta-root's children, newest link first.
    private readonly List<Checkpoint> _roots = [];

    /// <summary>The checkpoint new checkpoints get as parent, or null.</summary>
    public Checkpoint? Current { get; set; }

    public int Count => _byName.Count;

    public IEnumerable<Checkpoint> All => _byName.Values;

    public Checkpoint? Find(string name) => _byName.GetValueOrDefault(name);

    /// <exception cref="EngineException">"no domain checkpoint with matching name '%s'".</exception>
    public Checkpoint Get(string name)
        => Find(name) ?? throw new EngineException(EngineErrorReason.NoSuchCheckpoint, $"no domain checkpoint with matching name '{name}'");

    /// <summary>
    /// The tree checks of a redefinition (spec §2.5 step 2; the self-parent check is the
    /// document layer's): the parent exists, and following its ancestors never reaches the
    /// checkpoint itself.
    /// </summary>
    /// <exception cref="EngineException">"parent %s for moment %s not found" or "parent %s would create cycle to %s".</exception>
    public void CheckRedefinition(CheckpointDefinition definition)
    {
        if (definition.Parent is not { } parentName)
        {
            return;
        }

        var parent = Find(parentName)
            ?? throw new EngineException(EngineErrorReason.MissingParent, $"parent {parentName} for moment {definition.Name} not found");
        for (var ancestor = parent; ancestor is not null; ancestor = ancestor.Parent)
        {
            if (ancestor.Name == definition.Name)
            {
                throw new EngineException(EngineErrorReason.ParentCycle, $"parent {parentName} would create cycle to {definition.Name}");
            }
        }
    }

    /// <summary>Adds a checkpoint under the parent its definition names (which must exist).</summary>
    public Checkpoint Add(CheckpointDefinition definition)
    {
        var checkpoint = new Checkpoint(definition);
        _byName.Add(checkpoint.Name, checkpoint);
        checkpoint.LinkUnder(definition.Parent is { } p ? _byName[p] : null, _roots);
        return checkpoint;
    }

    /// <summary>Replaces a checkpoint's definition in place (spec §2.5 step 6): its children stay, it moves under the new parent.</summary>
    public void Replace(Checkpoint checkpoint, CheckpointDefinition definition)
    {
        checkpoint.Unlink(_roots);
        checkpoint.Definition = definition;
        checkpoint.LinkUnder(definition.Parent is { } p ? _byName[p] : null, _roots);
    }

    /// <summary>Moves <paramref name="checkpoint"/> under <paramref name="parent"/> (null: a root), its definition's parent name with it.</summary>
    public void Reparent(Checkpoint checkpoint, Checkpoint? parent)
    {
        checkpoint.Unlink(_roots);
        checkpoint.Definition = checkpoint.Definition with { Parent = parent?.Name };
        checkpoint.LinkUnder(parent, _roots);
    }

    /// <summary>Removes a checkpoint that has no children left.</summary>
    public void Remove(Checkpoint checkpoint)
    {
        if (checkpoint.Children.Count != 0)
        {
            throw new InvalidOperationException($"checkpoint {checkpoint.Name} still has children");
        }

        checkpoint.Unlink(_roots);
        _byName.Remove(checkpoint.Name);
        if (Current == checkpoint)
        {
            Current = null;
        }
    }

    /// <summary>Every checkpoint below <paramref name="start"/> (all of them for null), each parent before its descendants.</summary>
    public IEnumerable<Checkpoint> Descendants(Checkpoint? start)
    {
        var stack = new Stack<Checkpoint>();
        PushChildren(stack, start is null ? _roots : start.Children);
        while (stack.Count > 0)
        {
            var next = stack.Pop();
            yield return next;
            PushChildren(stack, next.Children);
        }
    }

    /// <summary>
    /// The listing of spec §4.3. From the meta-root (<paramref name="from"/> null): every
    /// checkpoint, or only the roots with <see cref="CheckpointListFlags.Roots"/>. From a
    /// checkpoint: its children, or its whole subtree with <see cref="CheckpointListFlags.Descendants"/>.
    /// Then the leaf filters. The order is always topological (a pre-order walk), which is
    /// what <see cref="CheckpointListFlags.Topological"/> asks for and one of the orders
    /// allowed without it.
    /// </summary>
    public IReadOnlyList<Checkpoint> List(Checkpoint? from, CheckpointListFlags flags)
    {
        var whole = flags.HasFlag(CheckpointListFlags.Roots);
        IEnumerable<Checkpoint> listed = from is null
            ? whole ? _roots : Descendants(null)
            : whole ? Descendants(from) : from.Children;
        if (flags.HasFlag(CheckpointListFlags.Leaves))
        {
            listed = listed.Where(c => c.Children.Count == 0);
        }

        if (flags.HasFlag(CheckpointListFlags.NoLeaves))
        {
            listed = listed.Where(c => c.Children.Count != 0);
        }

        return [.. listed];
    }

    /// <summary>
    /// Rebuilds a tree from stored definitions (spec §1, "daemon restart"): relations by parent
    /// name; current is the only leaf when the tree is one unbranched chain under one root,
    /// else none. A missing parent or a cycle makes the relations inconsistent: the affected
    /// checkpoints become roots, there is no current checkpoint, and false is returned.
    /// </summary>
    public static CheckpointTree Load(IEnumerable<CheckpointDefinition> definitions, out bool consistent)
    {
        var tree = new CheckpointTree();
        var nodes = new List<Checkpoint>();
        foreach (var definition in definitions)
        {
            if (definition.Name is { } name && !tree._byName.ContainsKey(name))
            {
                var node = new Checkpoint(definition);
                tree._byName.Add(name, node);
                nodes.Add(node);
            }
        }

        consistent = true;
        foreach (var node in nodes)
        {
            Checkpoint? parent = null;
            if (node.Definition.Parent is { } parentName && !tree._byName.TryGetValue(parentName, out parent))
            {
                consistent = false;
            }

            node.LinkUnder(parent, tree._roots);
        }

        // Nodes on a cycle are reachable from no root: break each cycle at one node.
        while (true)
        {
            var reachable = tree.Descendants(null).ToHashSet();
            var lost = nodes.FirstOrDefault(n => !reachable.Contains(n));
            if (lost is null)
            {
                break;
            }

            consistent = false;
            lost.Unlink(tree._roots);
            lost.LinkUnder(null, tree._roots);
        }

        if (consistent && tree._roots.Count == 1 && nodes.TrueForAll(n => n.Children.Count <= 1))
        {
            tree.Current = nodes.Single(n => n.Children.Count == 0);
        }

        return tree;
    }

    private static void PushChildren(Stack<Checkpoint> stack, IReadOnlyList<Checkpoint> children)
    {
        // Pushed in reverse so that they pop in list order.
        for (var i = children.Count - 1; i >= 0; i--)
        {
            stack.Push(children[i]);
        }
    }
}
