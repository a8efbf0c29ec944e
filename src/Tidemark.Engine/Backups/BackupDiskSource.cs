using Tidemark.Storage;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Engine.Backups;

/// <summary>
/// What the domain hands a backup job for one disk, taken at the job's instant.
/// </summary>
/// <param name="Target">The disk's target dev (<c>vda</c>), as the backup document names it.</param>
/// <param name="Live">
/// The running disk's image. The job reads from it clusters the guest has not overwritten yet;
/// it must be the image itself, not the guest's front end (job reads never go through
/// copy-before-write).
/// </param>
/// <param name="Incremental">
/// Null for a full backup (the job copies the clusters allocated at the instant); for an
/// incremental one, the dirty set since the base checkpoint as merged across the disk's chain
/// at the instant (spec §6.8): a snapshot the job owns and never changes.
/// </param>
/// <param name="SourcePath">The top image's path, which an incremental qcow2 target names as its backing file (spec §6.10).</param>
/// <param name="SourceFormat">The top image's format, written beside the backing file name.</param>
public sealed record BackupDiskSource(string Target, IBlockImage Live, DirtyBitmap? Incremental, string SourcePath, ImageFormat SourceFormat);
