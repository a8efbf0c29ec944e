using Tidemark.Formats.Checkpoints;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// One checkpoint in its domain's tree: the definition as stored (aligned disks, parent name,
/// embedded domain) and its place among the others. Kept apart from the document, as libvirt
/// keeps <c>virDomainMomentObj</c> apart from the definition.
/// </summary>
/// <remarks>Changed only by <see cref="CheckpointTree"/>, under the domain's lock.</remarks>
public sealed class Checkpoint
{
    // Newest link first: libvirt pushes each new child onto the head of its list (spec §1).
    private readonly List<Checkpoint> _children = [];

    internal Checkpoint(CheckpointDefinition definition)
    {
        Definition = definition;
    }

    /// <summary>The checkpoint's name.</summary>
    public string Name => Definition.Name!;

    /// <summary>The definition as stored (with the parent name and the embedded domain).</summary>
    public CheckpointDefinition Definition { get; internal set; }

    /// <summary>The parent in the tree, or null for a root.</summary>
    public Checkpoint? Parent { get; private set; }

    /// <summary>The direct children, newest link first.</summary>
    public IReadOnlyList<Checkpoint> Children => _children;

    internal void LinkUnder(Checkpoint? parent, List<Checkpoint> roots)
    {
        Parent = parent;
        (parent?._children ?? roots).Insert(0, this);
    }

    internal void Unlink(List<Checkpoint> roots)
    {
        (Parent?._children ?? roots).Remove(this);
        Parent = null;
    }
}
