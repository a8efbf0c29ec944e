namespace Tidemark.Backup.Prune;

/// <summary>The durable states a fold passes through, in order; each is what a crash right after it leaves.</summary>
internal enum FoldStep
{
    /// <summary>The pending record is on disk; nothing else has changed.</summary>
    Recorded,

    /// <summary>One disk's standalone file of the new base is written and fsynced under its temporary name.</summary>
    StandaloneWritten,

    /// <summary>That file has replaced the new base's chain file of that disk (same name, same content, no backing file).</summary>
    StandaloneRenamed,

    /// <summary>A manifest whose disks were folded is rewritten: they are fulls now.</summary>
    ManifestRewritten,

    /// <summary>The dropped backups' manifests are gone; their files are leftovers.</summary>
    ManifestsDropped,

    /// <summary>The leftovers are removed; only the pending record remains.</summary>
    FilesRemoved,
}
