using Tidemark.Formats.Backups;
using Tidemark.Nbd;
using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// One disk of a backup job: its document entry, its store, its copy-before-write and, for a
/// pull, its view and export. The per-disk state is libvirt's (spec §6.11).
/// </summary>
internal sealed class DiskBackup
{
    private int _state = (int)BackupDiskState.Running;

    public DiskBackup(BackupDisk disk, BackupDiskSource source, IBlockImage store, string? createdPath, CopyBeforeWrite copyBeforeWrite, NbdExport? export)
    {
        Disk = disk;
        Source = source;
        Store = store;
        CreatedPath = createdPath;
        CopyBeforeWrite = copyBeforeWrite;
        Export = export;
    }

    /// <summary>The aligned document entry.</summary>
    public BackupDisk Disk { get; }

    public BackupDiskSource Source { get; }

    /// <summary>The target (push) or scratch (pull), owned by the job.</summary>
    public IBlockImage Store { get; }

    /// <summary>The store's path when the job created it (and so removes it on failure, or always for a scratch); null for reuse-external.</summary>
    public string? CreatedPath { get; }

    public CopyBeforeWrite CopyBeforeWrite { get; }

    /// <summary>The denial of other writers the job holds on a disk opened sharing writes (<see cref="RawImage.ExcludeOtherWriters"/>), or null.</summary>
    public IDisposable? WriterExclusion { get; init; }

    /// <summary>
    /// Push: bytes of the disk the job counts as processed without copying them (the zero
    /// ranges a full push leaves as holes), 0 otherwise.
    /// </summary>
    public long SkippedBytes { get; init; }

    /// <summary>How the store takes zero clusters.</summary>
    public ZeroClusters StoreZeroes { get; init; }

    /// <summary>Pull: clusters holding data at the instant (the view's allocation).</summary>
    public DirtyBitmap? Allocated { get; init; }

    /// <summary>Pull: clusters allocated at the instant that read as zeroes.</summary>
    public DirtyBitmap? ZeroData { get; init; }

    /// <summary>Pull: the export of the point-in-time view.</summary>
    public NbdExport? Export { get; }

    /// <summary>running → complete | failed | cancelling → cancelled (spec §6.11).</summary>
    public BackupDiskState State => (BackupDiskState)Volatile.Read(ref _state);

    /// <summary>Moves a running (or cancelling) disk on; a disk that has concluded keeps its state.</summary>
    public void Conclude(BackupDiskState state)
    {
        var current = State;
        while (current is BackupDiskState.Running or BackupDiskState.Cancelling && current != state)
        {
            var seen = (BackupDiskState)Interlocked.CompareExchange(ref _state, (int)state, (int)current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
