namespace Tidemark.Engine.Checkpoints;

/// <summary>libvirt's <c>VIR_DOMAIN_CHECKPOINT_CREATE_*</c> (spec §4.1).</summary>
[Flags]
public enum CheckpointCreateFlags
{
    None = 0,

    /// <summary>Put back existing metadata instead of creating a checkpoint (spec §2.5).</summary>
    Redefine = 1 << 0,

    /// <summary>Quiesce guest file systems; refused, as the qemu driver refuses it.</summary>
    Quiesce = 1 << 1,

    /// <summary>With <see cref="Redefine"/>: check that the checkpoint's bitmaps are present and consistent.</summary>
    RedefineValidate = 1 << 2,
}

/// <summary>libvirt's <c>VIR_DOMAIN_CHECKPOINT_LIST_*</c> (spec §4.1, §4.3).</summary>
[Flags]
public enum CheckpointListFlags
{
    None = 0,

    /// <summary>Domain listing: only the roots. Child listing: the whole subtree (<c>DESCENDANTS</c>, the same bit).</summary>
    Roots = 1 << 0,

    /// <summary>Child listing: every descendant, not only the children (the bit of <see cref="Roots"/>).</summary>
#pragma warning disable CA1069 // libvirt gives ROOTS and DESCENDANTS the same bit: one meaning per listing call.
    Descendants = 1 << 0,
#pragma warning restore CA1069

    /// <summary>Every parent before its descendants.</summary>
    Topological = 1 << 1,

    /// <summary>Only checkpoints without children.</summary>
    Leaves = 1 << 2,

    /// <summary>Only checkpoints with children.</summary>
    NoLeaves = 1 << 3,
}

/// <summary>libvirt's <c>VIR_DOMAIN_CHECKPOINT_DELETE_*</c> (spec §4.1, §6.4).</summary>
[Flags]
public enum CheckpointDeleteFlags
{
    None = 0,

    /// <summary>Delete the checkpoint and every descendant.</summary>
    Children = 1 << 0,

    /// <summary>Forget the metadata; leave the bitmaps in the images.</summary>
    MetadataOnly = 1 << 1,

    /// <summary>Delete every descendant, keep the checkpoint.</summary>
    ChildrenOnly = 1 << 2,
}
