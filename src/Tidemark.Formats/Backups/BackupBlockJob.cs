namespace Tidemark.Formats.Backups;

/// <summary>
/// The per-disk block job of a running backup as kept in status XML (spec §3.6):
/// <c>&lt;blockjob name='backup-&lt;dst&gt;-&lt;node&gt;' type='backup' state=… jobflags=…&gt;</c>
/// with the disk, the temporary bitmap and the store. The engine writes it beside
/// <c>&lt;backups&gt;</c> so that a restarted daemon can take the job over.
/// </summary>
/// <param name="Name">The job name, <c>backup-&lt;target&gt;-&lt;top format node&gt;</c>.</param>
/// <param name="State">The job state as written (e.g. <c>running</c>).</param>
/// <param name="JobFlags">The job's API flags, written in hexadecimal.</param>
/// <param name="DiskTarget">&lt;disk dst=&gt;: the domain disk.</param>
/// <param name="Bitmap">&lt;bitmap name=&gt;: the temporary bitmap, for an incremental job.</param>
/// <param name="Store">The job's target or scratch: type, format, path, index and node names.</param>
public sealed record BackupBlockJob(string Name, string State, ulong JobFlags, string DiskTarget, string? Bitmap, BackupStore? Store);
