namespace Tidemark.Storage.Qcow2;

/// <summary>What <c>qemu-img check -r</c> may repair (BDRV_FIX_LEAKS, BDRV_FIX_ERRORS).</summary>
[Flags]
public enum Qcow2RepairMode
{
    /// <summary>Check only.</summary>
    None = 0,

    /// <summary><c>-r leaks</c>: refcounts above the references found are lowered.</summary>
    Leaks = 1,

    /// <summary>Refcounts below the references are raised, COPIED flags corrected, the refcount structure rebuilt when needed.</summary>
    Errors = 2,

    /// <summary><c>-r all</c>.</summary>
    All = Leaks | Errors,
}
