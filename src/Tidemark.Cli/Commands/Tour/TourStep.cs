namespace Tidemark.Cli.Commands.Tour;

/// <summary>What the tour does with one example document.</summary>
internal enum TourAction
{
    /// <summary>Validate and format the domain the other documents align with.</summary>
    Domain,

    /// <summary>Create a checkpoint: parse in create mode, align with the domain.</summary>
    CreateCheckpoint,

    /// <summary>Redefine a checkpoint: parse in redefine mode, align with its embedded domain.</summary>
    RedefineCheckpoint,

    /// <summary>Begin a backup: parse, align with the domain (generated file names use the suffix).</summary>
    Backup,

    /// <summary>A document that must be refused.</summary>
    Refuse,
}

/// <summary>One step of the tour: a file of <c>examples/</c> and what to do with it.</summary>
internal sealed record TourStep(string File, TourAction Action, string Purpose)
{
    /// <summary>The tour, in order: the domain first, since the others align with it.</summary>
    public static readonly TourStep[] All =
    [
        new("domain.xml", TourAction.Domain, "the virtual machine: two qcow2 disks (vda, vdb) and a raw one (vdc)"),
        new("checkpoint-create.xml", TourAction.CreateCheckpoint, "create checkpoint tour-1 on vda and vdb"),
        new("checkpoint-redefine.xml", TourAction.RedefineCheckpoint, "redefine checkpoint tour-2 from saved metadata with an embedded domain"),
        new("backup-push.xml", TourAction.Backup, "push backup: full copies of vda and vdb into target images"),
        new("backup-pull-incremental.xml", TourAction.Backup, "pull backup over NBD on TCP: what changed since tour-1"),
        new("backup-pull-unix.xml", TourAction.Backup, "pull backup over NBD on a unix socket: full, every writable disk"),
        new("checkpoint-invalid.xml", TourAction.Refuse, "a checkpoint libvirt refuses: the error names what is wrong"),
    ];
}
